"""Before llama.cpp loads a file: the memory estimate, and the child process that opens it first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from locallab.engines.gguf import check_gguf_header
from locallab.engines.llamacpp.memory import (
    AUTO_KV_BYTES,
    MemoryEstimate,
    auto_pool_tokens,
    check_fits,
    estimate_memory,
)
from locallab.engines.llamacpp.probe import probe_gguf
from locallab.errors import InsufficientStorageError, ModelLoadError
from tests.real_model import default_model_path


def test_the_estimate_counts_the_weights_and_the_kv_pool() -> None:
    path = default_model_path()
    estimate = estimate_memory(path, check_gguf_header(path), pool_tokens=8192)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dimensions; K and V in f16 for 8192 cells
    assert estimate.kv_cache == 30 * 8192 * 3 * (64 + 64) * 2
    assert estimate.weights == path.stat().st_size
    q8 = estimate_memory(path, check_gguf_header(path), pool_tokens=8192, kv_type="q8_0")
    assert q8.kv_cache == 30 * 8192 * 3 * (64 + 64) * 34 // 32  # a little over half


def test_the_automatic_pool_is_bounded_by_memory_and_by_full_contexts() -> None:
    header = check_gguf_header(default_model_path())
    per_token = 30 * 3 * (64 + 64) * 2
    tokens = auto_pool_tokens(header, context_length=4096, parallel=8)
    assert tokens % 256 == 0
    assert 4096 <= tokens <= 8 * 4096
    assert (tokens - 256) * per_token <= AUTO_KV_BYTES  # rounded up to llama.cpp's 256 at most
    assert auto_pool_tokens(header, context_length=100_000, parallel=1) == 8192  # one trained context
    assert auto_pool_tokens(header, context_length=512, parallel=2) == 1024  # never past parallel contexts


def test_a_model_over_the_limit_is_refused_with_the_numbers() -> None:
    huge = MemoryEstimate(weights=10**9, kv_cache=10**9, pool_tokens=2048)
    with pytest.raises(InsufficientStorageError, match=r"needs about 2,200 MB .*pool of 2048 tokens in f16"):
        check_fits("huge.gguf", huge, limit_mb=100)
    check_fits("small.gguf", MemoryEstimate(1000, 1000, 16))  # fits in free memory


def test_the_child_process_accepts_a_real_model() -> None:
    probe_gguf(default_model_path())


def test_the_child_process_refuses_what_llama_cpp_cannot_read(tmp_path: Path) -> None:
    evil = tmp_path / "evil.gguf"
    evil.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match=r"llama\.cpp cannot read evil\.gguf"):
        probe_gguf(evil)


def test_a_parser_crash_kills_only_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in for llama.cpp segfaulting on a hostile file: the child dies by SIGSEGV
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crasher))
    with pytest.raises(ModelLoadError, match=r"crashed llama.cpp's file parser \(SIGSEGV\)"):
        probe_gguf(default_model_path())


def test_a_parser_that_hangs_is_given_up_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(sleeper))
    with pytest.raises(ModelLoadError, match="did not finish reading"):
        probe_gguf(default_model_path(), timeout=0.5)
