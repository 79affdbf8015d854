"""Opening a GGUF file in a child process first: llama.cpp's native parser reads the metadata and the
vocabulary (no weights) under a time and memory limit, so a file that crashes or hangs the parser kills
the child, not the server. Used for model files that are not in the catalog.

    python -m locallab.engines.llamacpp.probe FILE      # exits 0 when llama.cpp can read FILE
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from locallab.errors import ModelLoadError

PROBE_SECONDS = 60.0
PROBE_MEMORY_BYTES = 4 << 30  # address space of the child: vocabularies need far less


def probe_gguf(path: Path, timeout: float = PROBE_SECONDS) -> None:
    """Raises ModelLoadError when llama.cpp cannot read `path`'s metadata and vocabulary, or dies trying."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "locallab.engines.llamacpp.probe", str(path)],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"llama.cpp did not finish reading {path.name} within {timeout:g} s; the file may be hostile."
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelLoadError(
            f"{path.name} crashed llama.cpp's file parser ({name}) in a test process; the file is corrupt "
            "or hostile, and was not loaded."
        )
    lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
    reason = lines[-1] if lines else f"exit status {done.returncode}"
    raise ModelLoadError(f"llama.cpp cannot read {path.name}: {reason}")


def _main(file: str) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (PROBE_MEMORY_BYTES, PROBE_MEMORY_BYTES))
    import llama_cpp

    quiet = llama_cpp.llama_log_callback(lambda *_: None)  # kept referenced while llama.cpp may call it
    llama_cpp.llama_log_set(quiet, None)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(file.encode(), params)
    if not model:
        print("llama.cpp refused the file (its metadata or vocabulary is invalid).", file=sys.stderr)
        return 1
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
