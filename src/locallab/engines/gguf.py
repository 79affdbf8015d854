"""Checking a GGUF file in Python before llama.cpp parses it, so a truncated, corrupt or hostile file
gets a clear reason instead of crashing the server (GGUF parser bugs: CVE-2025-53630, CVE-2026-7482).

Checked: magic and version; every metadata key and value (types, string lengths, array sizes) lies
within the file; tensor descriptions (name, at most 4 dimensions, known or plausible types) and that
every tensor's data lies within the file at an aligned offset.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

from locallab.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, metadata key/value count
MAX_TENSORS = 1_000_000
MAX_KEYS = 1_000_000
MAX_KEY_BYTES = 65_536
MAX_DIMS = 4
# value type -> (struct format, size); 8 = string, 9 = array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
# ggml type -> (bytes per block, elements per block), for the types llama.cpp ships models in
_TYPE_SIZES = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 9: (36, 32),
    10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 15: (292, 256),
    16: (66, 256), 17: (74, 256), 18: (98, 256), 19: (50, 256), 20: (18, 32), 21: (110, 256),
    22: (82, 256), 23: (136, 256), 24: (1, 1), 25: (2, 1), 26: (4, 1), 27: (8, 1), 28: (8, 1),
    29: (56, 256), 30: (2, 1),
}  # fmt: skip
_MAX_TYPE = 64  # types beyond those above are newer than this table: offsets are still checked


class _Reader:
    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self.f = f
        self.size = size
        self.name = name

    @property
    def pos(self) -> int:
        return self.f.tell()

    def fail(self, why: str) -> ModelLoadError:
        return ModelLoadError(f"{self.name} is not a valid GGUF file: {why} (at byte {self.pos}).")

    def read(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.size - self.pos:
            raise self.fail(f"{what} runs past the end of the file ({self.size} bytes)")
        return self.f.read(n)

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        data = self.read(struct.calcsize("<" + fmt), what)
        value: int | float | bool = struct.unpack("<" + fmt, data)[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", what))

    def string(self, what: str, limit: int | None = None) -> bytes:
        length = self.u64(f"length of {what}")
        if limit is not None and length > limit:
            raise self.fail(f"{what} claims {length} bytes (at most {limit})")
        return self.read(length, what)

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise self.fail(f"{what} runs past the end of the file ({self.size} bytes)")
        self.f.seek(n, 1)


MetadataValue = int | float | bool | str | None
_MAX_KEPT_STRING = 1024  # longer strings (chat templates, licenses) are checked and skipped


def _value(r: _Reader, kind: int, key: str, depth: int = 0) -> MetadataValue:
    """Reads (or skips) one metadata value; returns scalars and short strings (arrays: None)."""
    if kind in _SCALARS:
        return r.unpack(_SCALARS[kind], f"value of {key}")
    if kind == 8:
        length = r.u64(f"length of {key}")
        if depth == 0 and length <= _MAX_KEPT_STRING:
            return r.read(length, f"string value of {key}").decode("utf-8", errors="replace")
        r.skip(length, f"string value of {key}")
        return None
    if kind == 9 and depth == 0:
        item_kind = r.u32(f"array type of {key}")
        count = r.u64(f"array length of {key}")
        if item_kind in _SCALARS:
            r.skip(count * struct.calcsize(_SCALARS[item_kind]), f"array {key}")
        elif item_kind in (8, 9):
            if count > r.size - r.pos:  # every item takes at least one byte
                raise r.fail(f"array {key} claims {count} items")
            for _ in range(count):
                _value(r, item_kind, key, depth + 1)
        else:
            raise r.fail(f"array {key} has unknown item type {item_kind}")
        return None
    raise r.fail(f"metadata {key} has unknown value type {kind}")


def check_gguf_header(path: Path) -> dict[str, MetadataValue]:
    """Raises ModelLoadError naming the first thing wrong with the file's structure; returns the file's
    scalar and short string metadata (architecture, layer and head counts, ...)."""
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            return _check(_Reader(f, size, path.name))
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file {path}: {exc.strerror or exc}.") from exc


def check_gguf_bytes(data: bytes, name: str = "model.gguf") -> dict[str, MetadataValue]:
    """The same checks on a file held in memory."""
    return _check(_Reader(io.BytesIO(data), len(data), name))


def _check(r: _Reader) -> dict[str, MetadataValue]:
    if r.size < _HEADER.size:
        raise ModelLoadError(
            f"{r.name} is not a valid GGUF file: it is only {r.size} bytes long, shorter than a GGUF header."
        )
    magic, version, n_tensors, n_kv = _HEADER.unpack(r.read(_HEADER.size, "header"))
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{r.name} is not a valid GGUF file: it starts with {magic!r}, not b'GGUF'. "
            "Convert the model to GGUF or pick another file."
        )
    if version not in SUPPORTED_VERSIONS:
        raise ModelLoadError(f"{r.name} uses GGUF version {version}; supported versions are 2 and 3.")
    if not 0 < n_tensors <= MAX_TENSORS:
        raise ModelLoadError(f"{r.name} is not a valid GGUF file: its header lists {n_tensors} tensors.")
    if n_kv > MAX_KEYS:
        raise ModelLoadError(f"{r.name} is not a valid GGUF file: its header lists {n_kv} metadata keys.")
    alignment = 32
    metadata: dict[str, MetadataValue] = {}
    for _ in range(n_kv):
        key = r.string("metadata key", MAX_KEY_BYTES).decode("utf-8", errors="replace")
        value = _value(r, r.u32(f"type of {key}"), key)
        metadata[key] = value
        if key == "general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise r.fail(f"general.alignment is {value!r}, not a power of two")
            alignment = value
    tensors = []
    for _ in range(n_tensors):
        name = r.string("tensor name", MAX_KEY_BYTES).decode("utf-8", errors="replace")
        n_dims = r.u32(f"dimension count of {name}")
        if not 0 < n_dims <= MAX_DIMS:
            raise r.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        elements = 1
        for _ in range(n_dims):
            dim = r.u64(f"a dimension of {name}")
            if dim == 0 or elements * dim >= 2**62:
                raise r.fail(f"tensor {name} has an impossible shape")
            elements *= dim
        kind = r.u32(f"type of {name}")
        if kind > _MAX_TYPE:
            raise r.fail(f"tensor {name} has unknown type {kind}")
        offset = r.u64(f"offset of {name}")
        if offset % alignment:
            raise r.fail(f"tensor {name} starts at offset {offset}, not a multiple of {alignment}")
        tensors.append((name, kind, elements, offset))
    data_start = -(-r.pos // alignment) * alignment
    for name, kind, elements, offset in tensors:
        block_bytes, block_elements = _TYPE_SIZES.get(kind, (0, 1))
        if block_bytes and elements % block_elements:
            raise ModelLoadError(
                f"{r.name} is not a valid GGUF file: tensor {name} does not fill whole blocks."
            )
        end = data_start + offset + elements // block_elements * block_bytes
        if data_start + offset > r.size or end > r.size:
            raise ModelLoadError(
                f"{r.name} is not a valid GGUF file: tensor {name} lies beyond the end of the file "
                f"(needs {end} bytes, the file has {r.size}); the file may be truncated."
            )
    return metadata


_POOLING_NONE, _POOLING_RANK = 0, 4  # llama.cpp's pooling types that make no sentence vector


def is_embedding_model(metadata: dict[str, MetadataValue]) -> bool:
    """Whether a GGUF's metadata describes an embedding model: one that pools each text into a vector
    (`<arch>.pooling_type` mean, CLS or last token). Rerankers (rank pooling) are not."""
    arch = metadata.get("general.architecture")
    pooling = metadata.get(f"{arch}.pooling_type")
    return isinstance(pooling, int) and pooling not in (_POOLING_NONE, _POOLING_RANK)
