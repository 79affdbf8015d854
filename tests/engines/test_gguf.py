"""The GGUF checker refuses broken and hostile files with a reason, and never crashes on them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locallab.engines.gguf import check_gguf_bytes, check_gguf_header
from locallab.errors import ModelLoadError
from tests.real_model import default_model_path


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def small_gguf(*, n_tensors: int | None = None, values: int = 4, offset: int = 0, dims: int = 1) -> bytes:
    """A valid GGUF: two metadata keys and one F32 tensor of `values` floats."""
    kv = _string("general.architecture") + struct.pack("<I", 8) + _string("llama")
    kv += _string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32)
    shape = struct.pack("<I", dims) + struct.pack("<Q", values) + struct.pack("<Q", 1) * (dims - 1)
    tensor = _string("weight") + shape + struct.pack("<I", 0) + struct.pack("<Q", offset)
    header = struct.pack("<4sIQQ", b"GGUF", 3, 1 if n_tensors is None else n_tensors, 2) + kv + tensor
    header += b"\0" * (-len(header) % 32)
    return header + struct.pack(f"<{values}f", *range(values))


def test_a_valid_file_passes() -> None:
    check_gguf_bytes(small_gguf())


def test_the_default_model_passes() -> None:
    check_gguf_header(default_model_path())


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "only 0 bytes"),
        (b"GGUF\x03", "only 5 bytes"),
        (b"PK\x03\x04" + b"\x00" * 40, "not b'GGUF'"),
        (b"x" * 100, "not b'GGUF'"),  # a 100-byte file named evil.gguf
        (struct.pack("<4sIQQ", b"GGUF", 1, 10, 5), "version 1"),
        (struct.pack("<4sIQQ", b"GGUF", 3, 0, 5), "0 tensors"),
        (struct.pack("<4sIQQ", b"GGUF", 3, 2**40, 0), "tensors"),
        (small_gguf(n_tensors=5), "not a valid GGUF file"),  # forged tensor count
        (small_gguf()[:-1], "beyond the end of the file"),  # truncated data
        (small_gguf(offset=3), "not a multiple of 32"),
        (small_gguf(offset=1 << 40), "beyond the end"),
        (small_gguf(dims=7), "7 dimensions"),
        (struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + struct.pack("<Q", 2**62), "at most 65536"),  # huge key
    ],
)
def test_broken_files_are_refused_with_the_reason(data: bytes, words: str) -> None:
    with pytest.raises(ModelLoadError, match=words):
        check_gguf_bytes(data)


def test_a_truncated_copy_of_the_real_model_is_refused(tmp_path: Path) -> None:
    real = default_model_path().read_bytes()
    for cut in (1_000, 1_000_000, len(real) - 1):
        broken = tmp_path / "cut.gguf"
        broken.write_bytes(real[:cut])
        with pytest.raises(ModelLoadError, match=r"cut\.gguf"):
            check_gguf_header(broken)


def test_unreadable_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Cannot read"):
        check_gguf_header(tmp_path)  # a directory


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_files_never_crash_the_checker(data: st.DataObject) -> None:
    original = bytearray(small_gguf(values=8))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    try:
        check_gguf_bytes(bytes(original[:cut]))
    except ModelLoadError:
        pass  # refusing is fine; any other exception is a bug


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(position=st.integers(0, 200_000), value=st.integers(0, 255))
def test_mutated_real_headers_never_crash_the_checker(position: int, value: int) -> None:
    header = bytearray(_REAL_HEAD)
    header[position] = value
    try:
        check_gguf_bytes(bytes(header))  # the data is missing: it must be refused, never crash
    except ModelLoadError:
        return
    raise AssertionError("a file without its tensor data was accepted")


with default_model_path().open("rb") as _model:
    _REAL_HEAD = _model.read(200_001)
