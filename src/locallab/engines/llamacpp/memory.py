"""How much memory a GGUF model will take once loaded (weights plus KV cache), checked before loading so
that a model that cannot fit gets a 507 with the numbers instead of an out-of-memory kill."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from locallab.engines.gguf import MetadataValue
from locallab.errors import InsufficientStorageError

MB = 1_000_000
_KV_BYTES = 2  # llama.cpp keeps K and V in f16 by default
_OVERHEAD = 1.10  # an allowance for compute buffers and allocator slack


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    sequences: int
    tokens_per_sequence: int

    @property
    def total(self) -> int:
        return int((self.weights + self.kv_cache) * _OVERHEAD)


def _int(metadata: dict[str, MetadataValue], key: str, default: int) -> int:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def estimate_memory(
    path: Path, metadata: dict[str, MetadataValue], *, context_length: int, parallel: int
) -> MemoryEstimate:
    """Weights (the file) plus the KV cache for `parallel` sequences of the context llama.cpp will use."""
    arch = str(metadata.get("general.architecture") or "")
    layers = _int(metadata, f"{arch}.block_count", 0)
    embedding = _int(metadata, f"{arch}.embedding_length", 0)
    heads = _int(metadata, f"{arch}.attention.head_count", 1)
    kv_heads = _int(metadata, f"{arch}.attention.head_count_kv", heads)  # per-layer arrays: assume all
    key_length = _int(metadata, f"{arch}.attention.key_length", embedding // heads)
    value_length = _int(metadata, f"{arch}.attention.value_length", embedding // heads)
    trained = _int(metadata, f"{arch}.context_length", context_length)
    tokens = min(context_length, trained)
    kv = layers * tokens * parallel * kv_heads * (key_length + value_length) * _KV_BYTES
    return MemoryEstimate(path.stat().st_size, kv, parallel, tokens)


def check_fits(name: str, estimate: MemoryEstimate, limit_mb: int = 0) -> None:
    """Raises InsufficientStorageError when the model would not fit in free memory (or under `limit_mb`,
    counting what this process already holds)."""
    available = psutil.virtual_memory().available
    where = "free on this machine"
    if limit_mb:
        allowed = limit_mb * MB - psutil.Process().memory_info().rss
        if allowed < available:
            available, where = max(0, allowed), "left under LOCALLAB_MEMORY_LIMIT_MB"
    if estimate.total <= available:
        return
    e = estimate
    raise InsufficientStorageError(
        f"{name} needs about {e.total / MB:,.0f} MB (weights {e.weights / MB:,.0f} MB + KV cache "
        f"{e.kv_cache / MB:,.0f} MB for {e.sequences} sequences of {e.tokens_per_sequence} tokens), "
        f"but only {available / MB:,.0f} MB are {where}. Lower LOCALLAB_PARALLEL or "
        "LOCALLAB_CONTEXT_LENGTH, or unload a model."
    )
