"""The GGUF header check names what is wrong with a file before llama.cpp parses it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from locallab.engines.gguf import check_gguf_header
from locallab.errors import ModelLoadError


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    return path


def test_a_valid_header_passes(tmp_path: Path) -> None:
    check_gguf_header(_write(tmp_path, struct.pack("<4sIqq", b"GGUF", 3, 10, 5)))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "only 0 bytes"),
        (b"GGUF\x03", "only 5 bytes"),
        (b"PK\x03\x04" + b"\x00" * 40, "not b'GGUF'"),
        (struct.pack("<4sIqq", b"GGUF", 1, 10, 5), "version 1"),
        (struct.pack("<4sIqq", b"GGUF", 3, 0, 5), "0 tensors"),
    ],
)
def test_bad_headers_are_refused_with_the_reason(tmp_path: Path, data: bytes, words: str) -> None:
    with pytest.raises(ModelLoadError, match=words):
        check_gguf_header(_write(tmp_path, data))


def test_unreadable_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Cannot read"):
        check_gguf_header(tmp_path)  # a directory
