"""Reading a `.safetensors` file with numpy alone (no torch): an 8-byte header length, a JSON header of
`{name: {dtype, shape, data_offsets}}`, then the raw little-endian tensor bytes.

Every tensor is checked against the file (offsets inside the data, byte count matching dtype and shape)
before it is mapped, so a truncated or hostile file gets a clear reason.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from locallab.errors import ModelLoadError

_MAX_HEADER = 100_000_000
_DTYPES: dict[str, tuple[str, int]] = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}
_SKIPPED_DTYPES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F64": 8}


@dataclass(frozen=True)
class SafetensorsFile:
    path: Path
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)
    _offsets: dict[str, tuple[int, int]]
    _data_start: int

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def load(self, name: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The tensor as float32 (bf16 and f16 widened), read from disk now."""
        dtype, shape = self.tensors[name]
        if dtype not in _DTYPES:
            raise ModelLoadError(f"{self.path.name}: tensor {name} has dtype {dtype}, not a float type.")
        begin, end = self._offsets[name]
        raw = np.fromfile(self.path, dtype=np.uint8, count=end - begin, offset=self._data_start + begin)
        if dtype == "BF16":  # the high half of a float32
            widened = raw.view("<u2").astype(np.uint32) << 16
            return widened.view(np.float32).reshape(shape)
        return raw.view(_DTYPES[dtype][0]).astype(np.float32).reshape(shape)


def open_safetensors(path: Path) -> SafetensorsFile:
    """Parses and checks the header; raises ModelLoadError naming what is wrong."""
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelLoadError(f"{name} is not a safetensors file: it is {size} bytes long.")
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_HEADER, size - 8):
                raise ModelLoadError(f"{name} is not a safetensors file: its header claims {length} bytes.")
            header = json.loads(f.read(length))
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{name} is not a safetensors file: its header is not JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{name} is not a safetensors file: its header is not a JSON object.")
    data_start = 8 + length
    data_size = size - data_start
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    offsets: dict[str, tuple[int, int]] = {}
    for key, desc in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = str(desc["dtype"]), tuple(desc["shape"]), desc["data_offsets"]
            if not all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end)):
                raise TypeError("negative or non-integer numbers")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{name}: the header entry of tensor {key} is malformed ({exc}).") from exc
        item = _DTYPES[dtype][1] if dtype in _DTYPES else _SKIPPED_DTYPES.get(dtype)
        if item is None:
            raise ModelLoadError(f"{name}: tensor {key} has unknown dtype {dtype}.")
        if not begin <= end <= data_size or end - begin != math.prod(shape) * item:
            raise ModelLoadError(
                f"{name}: tensor {key} ({dtype} {list(shape)}) does not match its bytes "
                f"{begin}..{end} of {data_size}; the file is truncated or corrupt."
            )
        tensors[key] = (dtype, shape)
        offsets[key] = (begin, end)
    return SafetensorsFile(path, tensors, offsets, data_start)
