"""`locallab doctor`: checks this machine and these settings before (or instead of) a failed start.

One line per check, `ok`, `warn` or `fail`, with what to do about anything that is not ok; the exit
status is 1 when any check fails. It reads the same settings as `locallab start` (flags and LOCALLAB_*).
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import os
import platform
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import psutil

from locallab.config.catalog import load_catalog
from locallab.config.remote import load_remote_models
from locallab.config.settings import Settings
from locallab.config.tls import tls_problem
from locallab.engines.base import Engine
from locallab.errors import LocalLabError, ModelLoadError
from locallab.services.model_ids import ResolvedModel
from locallab.services.registry import ModelRegistry

Outcome = Literal["ok", "warn", "fail"]
MB = 1_000_000
REBUILD = (
    'rebuild llama-cpp-python for this CPU: CMAKE_ARGS="$(scripts/llama-cmake-args.sh)" pip install '
    "--no-cache-dir --force-reinstall --no-deps llama-cpp-python (or `make install` after removing "
    ".venv/.llama-cpp)"
)


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    message: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.outcome:<5} {self.name:<10} {self.message}{fix}"


# llama.cpp's feature names (llama_print_system_info) → the flag /proc/cpuinfo lists for them
CPU_FLAG_FOR = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "AVX_VNNI": "avx_vnni",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}


def cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:(.*)$", text, flags=re.MULTILINE)
    return set(match.group(1).split()) if match else None


def build_features(system_info: str) -> set[str]:
    """The CPU features a llama.cpp build uses, from its `llama_print_system_info()` text."""
    return {name for name, on in re.findall(r"([A-Z][A-Z0-9_]*) = (\d)", system_info) if on == "1"}


def check_build_against_cpu(features: set[str], flags: set[str] | None) -> Check:
    used = sorted(f for f in features if f in CPU_FLAG_FOR)
    if flags is None:
        return Check("llama.cpp", "warn", f"built for {' '.join(used)}; cannot read this CPU's features.")
    missing = [f for f in used if CPU_FLAG_FOR[f] not in flags]
    if missing:
        return Check(
            "llama.cpp",
            "fail",
            f"the build uses {', '.join(missing)}, which this CPU lacks: it will die with "
            "'Illegal instruction' at the first token.",
            REBUILD,
        )
    if "AMX_INT8" in features:
        return Check(
            "llama.cpp",
            "warn",
            "the build has AMX kernels; many virtual machines advertise AMX but raise 'Illegal "
            "instruction' when it runs (the decode check below tells).",
            REBUILD + " (the script never enables AMX)",
        )
    return Check(
        "llama.cpp", "ok", f"built for {' '.join(used) or 'no optional CPU features'}; this CPU has them all."
    )


def check_python() -> Iterable[Check]:
    # LocalLab cannot even be imported on an older Python: reaching this line says it is new enough.
    yield Check("python", "ok", f"{platform.python_version()} ({sys.executable})")
    names = ("locallab", "llama-cpp-python", "fastapi", "uvicorn", "pydantic", "torch", "transformers")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            if name == "llama-cpp-python":
                yield Check("packages", "fail", "llama-cpp-python is not installed.", "run `make install`")
    yield Check("packages", "ok", ", ".join(versions))


def check_llama_build() -> Iterable[Check]:
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
    except Exception as exc:  # a missing or broken native library: say so, don't crash the doctor
        yield Check("llama.cpp", "fail", f"cannot load llama.cpp ({exc}).", REBUILD)
        return
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    yield check_build_against_cpu(build_features(text), cpu_flags())


def _default_model(settings: Settings) -> tuple[ResolvedModel | None, Check]:
    if not settings.model:
        return None, Check("model", "ok", "no default model configured (requests name theirs).")
    try:
        catalog = load_catalog(extra=settings.catalog_file)
        remote = load_remote_models(settings.remote_models)

        def no_loader(model: ResolvedModel) -> Engine:
            raise ModelLoadError("the doctor loads no model")

        registry = ModelRegistry(catalog, no_loader, settings.models_dir, remote_ids=frozenset(remote))
        registry.trust(settings.model)
        resolved = registry.resolve(settings.model)
    except (LocalLabError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, LocalLabError) else str(exc)
        return None, Check("model", "fail", f"the default model '{settings.model}': {detail}", _MODEL_FIX)
    where = "remote engine" if resolved.engine == "remote" else str(resolved.path)
    if resolved.engine != "remote" and not resolved.path.exists():
        return resolved, Check("model", "ok", f"{resolved.id}: assembled into {where} on first load.")
    return resolved, Check("model", "ok", f"{resolved.id} ({resolved.engine}): {where}")


_MODEL_FIX = "install or pull it (locallab models pull ID), or start with --model pointing at a model"


def check_models(settings: Settings) -> Iterable[Check]:
    directory = settings.models_dir.expanduser()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if directory.exists() and not directory.is_dir():
        yield Check("models dir", "fail", f"{directory} is not a directory.", "set LOCALLAB_MODELS_DIR")
    elif not existing.is_dir() or not _writable(existing):
        yield Check(
            "models dir",
            "fail",
            f"{directory} is not writable by this user: pulls would fail.",
            "chown it to the user LocalLab runs as, or set LOCALLAB_MODELS_DIR",
        )
    else:
        count = sum(1 for p in directory.iterdir() if p.suffix == ".gguf") if directory.is_dir() else 0
        state = f"{count} GGUF file(s) there" if directory.is_dir() else "will be created on first pull"
        yield Check("models dir", "ok", f"{directory} is writable; {state}.")
    resolved, check = _default_model(settings)
    yield check
    if resolved is not None and resolved.engine == "llama.cpp" and resolved.path.is_file():
        yield from check_memory(settings, resolved.path)
        yield check_decode(resolved.path)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_memory(settings: Settings, path: Path) -> Iterable[Check]:
    from locallab.engines.gguf import check_gguf_header
    from locallab.engines.llamacpp.memory import auto_pool_tokens, estimate_memory

    try:
        header = check_gguf_header(path)
    except LocalLabError as exc:
        yield Check("memory", "fail", f"{path.name} is not a usable GGUF file: {exc.detail}")
        return
    pool = settings.kv_tokens or auto_pool_tokens(
        header, context_length=settings.context_length, parallel=settings.parallel, kv_type=settings.kv_type
    )
    estimate = estimate_memory(path, header, pool_tokens=pool, kv_type=settings.kv_type)
    available = psutil.virtual_memory().available
    if settings.memory_limit_mb:
        available = min(available, settings.memory_limit_mb * MB)
    need = (
        f"needs about {estimate.total / MB:,.0f} MB "
        f"(a KV pool of {estimate.pool_tokens:,} tokens in {estimate.kv_type})"
    )
    have = f"{available / MB:,.0f} MB available"
    if estimate.total > available:
        fix = "lower LOCALLAB_KV_TOKENS, set LOCALLAB_KV_TYPE=q8_0, or choose a smaller model"
        yield Check("memory", "fail", f"the default model {need}; only {have}.", fix)
    elif estimate.total > 0.8 * available:
        yield Check("memory", "warn", f"the default model {need}; {have}: little room left.")
    else:
        yield Check("memory", "ok", f"the default model {need}; {have}.")


def check_decode(path: Path, timeout: float = 120.0) -> Check:
    """Decodes a few tokens in a child process: the only sure test that this llama.cpp build runs here."""
    command = [sys.executable, "-m", "locallab.engines.llamacpp.smoke", str(path)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Check("decode", "warn", f"decoding 4 tokens took over {timeout:g} s.", "check the CPU load")
    if done.returncode == 0:
        return Check("decode", "ok", f"{path.name} decodes on this CPU (4 tokens in a child process).")
    if done.returncode == -signal.SIGILL:
        return Check(
            "decode", "fail", "llama.cpp died with 'Illegal instruction' at the first token.", REBUILD
        )
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return Check("decode", "fail", f"decoding failed (exit {done.returncode}): {last}")


def check_port(settings: Settings) -> Check:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    address = f"{settings.host}:{settings.port}"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind((settings.host, settings.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Check(
                "port",
                "fail",
                f"{address} is already in use (another LocalLab? `locallab status` tells).",
                "stop the other server, or choose another --port",
            )
        if exc.errno == errno.EACCES:
            return Check("port", "fail", f"{address}: ports below 1024 need privileges.", "use --port 8000")
        return Check("port", "fail", f"cannot bind {address}: {exc.strerror or exc}.", "check --host")
    return Check("port", "ok", f"{address} is free.")


def check_access(settings: Settings) -> Iterable[Check]:
    keys = settings.key_list()
    keys_file = settings.api_keys_file
    keys_file_ok = keys_file is not None and keys_file.is_file() and os.access(keys_file, os.R_OK)
    if keys_file is not None and not keys_file_ok:
        yield Check(
            "access",
            "fail",
            f"the API keys file {keys_file} is missing or unreadable: its keys would be refused (401).",
            "create it (one key a line) readable by the server's user, or unset LOCALLAB_API_KEYS_FILE",
        )
    has_keys = bool(keys) or keys_file is not None  # as `start` counts them (a broken file: see above)
    problem = tls_problem(settings.ssl_certfile, settings.ssl_keyfile)
    https = settings.ssl_certfile is not None and problem is None
    if problem is not None:
        yield Check("https", "fail", problem, "fix LOCALLAB_SSL_CERTFILE / LOCALLAB_SSL_KEYFILE")
    elif https:
        yield Check("https", "ok", f"serves HTTPS with {settings.ssl_certfile}.")
    if settings.is_loopback():
        note = " with API keys" if has_keys else ""
        yield Check("access", "ok", f"listens on {settings.host} only (this machine){note}.")
    elif not has_keys and not settings.allow_no_auth:
        yield Check(
            "access",
            "fail",
            f"{settings.host} without an API key: start refuses this.",
            "add --api-key $(openssl rand -hex 32), or --allow-no-auth on a trusted network",
        )
    elif not has_keys:
        yield Check("access", "warn", f"{settings.host} with no API key: anyone on the network can use it.")
    elif not https:
        yield Check(
            "access",
            "warn",
            f"{settings.host} over plain HTTP: API keys can be read on the way.",
            "set LOCALLAB_SSL_CERTFILE and LOCALLAB_SSL_KEYFILE, or put a TLS proxy in front",
        )
    else:
        yield Check("access", "ok", f"{settings.host} with API keys over HTTPS.")
    if any(len(k) < 16 for k in keys):
        yield Check("access", "warn", "an API key is shorter than 16 characters.", "openssl rand -hex 32")


def check_gpu(settings: Settings) -> Check:
    if importlib.util.find_spec("torch") is None:
        if settings.device == "cuda":
            return Check(
                "gpu",
                "fail",
                "LOCALLAB_DEVICE=cuda, but torch is not installed.",
                "make install EXTRAS=transformers",
            )
        return Check("gpu", "ok", "transformers extra not installed: GGUF models on the CPU only.")
    import torch

    if torch.cuda.is_available():
        return Check("gpu", "ok", f"torch sees {torch.cuda.get_device_name(0)}.")
    if settings.device == "cuda":
        return Check(
            "gpu", "fail", "LOCALLAB_DEVICE=cuda, but torch sees no GPU.", "install a CUDA build of torch"
        )
    return Check("gpu", "ok", "torch sees no GPU: transformers models run on the CPU.")


def check_catalog(settings: Settings) -> Iterable[Check]:
    if settings.catalog_file is None:
        return
    try:
        load_catalog(extra=settings.catalog_file)
    except ValueError as exc:
        yield Check("settings", "fail", f"LOCALLAB_CATALOG_FILE: {exc}")


def run_checks(settings: Settings) -> Iterator[Check]:
    groups: list[Callable[[], Iterable[Check]]] = [
        check_python,
        check_llama_build,
        lambda: [Check("settings", "ok", "every setting is valid.")],
        lambda: check_catalog(settings),
        lambda: check_access(settings),
        lambda: [check_port(settings)],
        lambda: check_models(settings),
        lambda: [check_gpu(settings)],
    ]
    for group in groups:
        yield from group()


def report(checks: Iterable[Check], out: TextIO) -> int:
    failed = False
    for check in checks:
        print(check.line(), file=out, flush=True)
        failed = failed or check.outcome == "fail"
    return 1 if failed else 0
