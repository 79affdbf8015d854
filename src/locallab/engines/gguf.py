"""A GGUF header check that runs before llama.cpp parses a file, so bad files fail with a clear reason."""

from __future__ import annotations

import struct
from pathlib import Path

from locallab.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
_HEADER = struct.Struct("<4sIqq")  # magic, version, tensor count, metadata key/value count


def check_gguf_header(path: Path) -> None:
    """Raises ModelLoadError naming what is wrong with the file's header."""
    try:
        with path.open("rb") as f:
            header = f.read(_HEADER.size)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file {path}: {exc.strerror or exc}.") from exc
    if len(header) < _HEADER.size:
        raise ModelLoadError(
            f"{path.name} is not a valid GGUF file: it is only {len(header)} bytes long, "
            "shorter than a GGUF header."
        )
    magic, version, n_tensors, n_kv = _HEADER.unpack(header)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path.name} is not a valid GGUF file: it starts with {magic!r}, not b'GGUF'. "
            "Convert the model to GGUF or pick another file."
        )
    if version not in SUPPORTED_VERSIONS:
        raise ModelLoadError(f"{path.name} uses GGUF version {version}; supported versions are 2 and 3.")
    if n_tensors <= 0 or n_kv < 0:
        raise ModelLoadError(f"{path.name} is not a valid GGUF file: its header lists {n_tensors} tensors.")
