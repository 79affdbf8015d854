"""Remote models: model ids served by other OpenAI-compatible servers (vLLM, llama.cpp's server, TGI,
Ollama, another LocalLab), read from the TOML file named by `LOCALLAB_REMOTE_MODELS`.

Upstream URLs come from this file only, never from a request, so a model id cannot make the server
call an address of the caller's choosing.

    [models."llama-70b"]
    upstreams = ["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"]
    upstream_model = "meta-llama/Llama-3.3-70B-Instruct"   # default: the id itself
    api_key_env = "VLLM_API_KEY"                           # or api_key = "..." (not both)
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_FIELDS = {
    "upstreams", "upstream_model", "api_key", "api_key_env", "context_length", "max_failures",
    "cooldown", "health_interval", "connect_timeout", "read_timeout", "sampling_extensions",
}  # fmt: skip


class RemoteConfigError(ValueError):
    """The remote models file cannot be used; the message names the file, the model and the key."""


@dataclass(frozen=True)
class RemoteModelConfig:
    id: str
    upstreams: tuple[str, ...]  # OpenAI base URLs, each ending in /v1
    upstream_model: str  # the model name sent upstream
    api_key: str | None = None
    context_length: int = 0  # reported by /models/current; 0: unknown (the upstream checks lengths)
    max_failures: int = 3  # consecutive failures that open an upstream's circuit
    cooldown: float = 10.0  # seconds an open circuit waits before one trial request
    health_interval: float = 5.0  # seconds between health probes (GET <upstream>/models)
    connect_timeout: float = 2.0
    read_timeout: float = 300.0  # seconds without a byte from the upstream before it counts as failed
    sampling_extensions: bool = True  # send top_k and repetition_penalty (vLLM, LocalLab accept them)


def upstream_base(url: str) -> str:
    """The OpenAI base URL: `http://host:8000` and `http://host:8000/v1/` both give `http://host:8000/v1`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteConfigError(f"'{url}' is not an http:// or https:// URL with a host name.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise RemoteConfigError(
            f"'{url}': no user, password, query or fragment in upstream URLs (use api_key_env for keys)."
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _number(raw: dict[str, Any], key: str, default: float, where: str, *, integer: bool = False) -> Any:
    value: Any = raw.get(key, default)
    number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not number or value < 0:
        kind = "a whole number" if integer else "a number"
        raise RemoteConfigError(f"{where}: {key} must be {kind} ≥ 0 (got {value!r}).")
    return value


def _model(model_id: str, raw: Any, where: str) -> RemoteModelConfig:
    if not _MODEL_ID.match(model_id):
        raise RemoteConfigError(f"{where}: model ids use letters, digits and '._:/-' (up to 128).")
    if not isinstance(raw, dict):
        raise RemoteConfigError(f"{where}: expected a table with `upstreams`.")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        keys = ", ".join(sorted(_FIELDS))
        raise RemoteConfigError(f"{where}: unknown key {unknown[0]!r}; the keys are {keys}.")
    upstreams = raw.get("upstreams")
    if not isinstance(upstreams, list) or not upstreams or not all(isinstance(u, str) for u in upstreams):
        raise RemoteConfigError(f"{where}: upstreams must be a non-empty list of URLs.")
    try:
        bases = tuple(dict.fromkeys(upstream_base(u) for u in upstreams))
    except RemoteConfigError as exc:
        raise RemoteConfigError(f"{where}: {exc}") from None
    upstream_model = raw.get("upstream_model", model_id)
    if not isinstance(upstream_model, str) or not upstream_model:
        raise RemoteConfigError(f"{where}: upstream_model must be a non-empty string.")
    if "api_key" in raw and "api_key_env" in raw:
        raise RemoteConfigError(f"{where}: set api_key or api_key_env, not both.")
    api_key = raw.get("api_key")
    if "api_key_env" in raw:
        name = raw["api_key_env"]
        api_key = os.environ.get(name) if isinstance(name, str) else None
        if not api_key:
            raise RemoteConfigError(f"{where}: api_key_env names {name!r}, which is not set.")
    if api_key is not None and not isinstance(api_key, str):
        raise RemoteConfigError(f"{where}: api_key must be a string.")
    extensions = raw.get("sampling_extensions", True)
    if not isinstance(extensions, bool):
        raise RemoteConfigError(f"{where}: sampling_extensions must be true or false.")
    return RemoteModelConfig(
        id=model_id,
        upstreams=bases,
        upstream_model=upstream_model,
        api_key=api_key,
        context_length=_number(raw, "context_length", 0, where, integer=True),
        max_failures=max(1, _number(raw, "max_failures", 3, where, integer=True)),
        cooldown=float(_number(raw, "cooldown", 10.0, where)),
        health_interval=float(_number(raw, "health_interval", 5.0, where)),
        connect_timeout=float(_number(raw, "connect_timeout", 2.0, where)),
        read_timeout=float(_number(raw, "read_timeout", 300.0, where)),
        sampling_extensions=extensions,
    )


def load_remote_models(path: Path | None) -> dict[str, RemoteModelConfig]:
    """The remote models of a `[models."<id>"]` TOML file; {} without a file."""
    if path is None:
        return {}
    try:
        with Path(path).expanduser().open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RemoteConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RemoteConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise RemoteConfigError(f'{path}: unknown table {unknown[0]!r}; models go under [models."<id>"].')
    models = data.get("models", {})
    if not isinstance(models, dict) or not models:
        raise RemoteConfigError(f'{path}: no models; add a [models."<id>"] table with upstreams.')
    return {mid: _model(mid, raw, f'{path} [models."{mid}"]') for mid, raw in models.items()}
