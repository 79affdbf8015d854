"""Before llama.cpp loads a file: the memory estimate, and the child process that opens it first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from locallab.engines.gguf import check_gguf_header
from locallab.engines.llamacpp.memory import MemoryEstimate, check_fits, estimate_memory
from locallab.engines.llamacpp.probe import probe_gguf
from locallab.errors import InsufficientStorageError, ModelLoadError
from tests.real_model import default_model_path


def test_the_estimate_counts_the_weights_and_every_sequence_s_kv_cache() -> None:
    path = default_model_path()
    estimate = estimate_memory(path, check_gguf_header(path), context_length=4096, parallel=8)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dimensions; K and V in f16 for 8 x 4096 tokens
    assert estimate.kv_cache == 30 * (8 * 4096) * 3 * (64 + 64) * 2
    assert estimate.weights == path.stat().st_size
    capped = estimate_memory(path, check_gguf_header(path), context_length=100_000, parallel=1)
    assert capped.tokens_per_sequence == 8192  # never more than the model was trained for


def test_a_model_over_the_limit_is_refused_with_the_numbers() -> None:
    huge = MemoryEstimate(weights=10**9, kv_cache=10**9, sequences=4, tokens_per_sequence=2048)
    with pytest.raises(InsufficientStorageError, match=r"needs about 2,200 MB .*4 sequences of 2048 tokens"):
        check_fits("huge.gguf", huge, limit_mb=100)
    check_fits("small.gguf", MemoryEstimate(1000, 1000, 1, 16))  # fits in free memory


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
