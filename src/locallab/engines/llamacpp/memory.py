"""How much memory a GGUF model will take once loaded (weights plus KV cache), checked before loading so
that a model that cannot fit gets a 507 with the numbers instead of an out-of-memory kill."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from locallab.engines.gguf import MetadataValue
from locallab.errors import InsufficientStorageError

MB = 1_000_000
_OVERHEAD = 1.10  # an allowance for compute buffers and allocator slack
# Bytes per element of each KV cache type llama.cpp offers here (q8_0: 34 bytes per block of 32).
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# The automatic pool: at most this much KV cache, and at most a quarter of the memory free at load.
AUTO_KV_BYTES = 192 * MB
_POOL_ALIGN = 256  # llama.cpp rounds its context up to a multiple of 256 cells


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    pool_tokens: int
    kv_type: str = "f16"

    @property
    def total(self) -> int:
        return int((self.weights + self.kv_cache) * _OVERHEAD)


def _int(metadata: dict[str, MetadataValue], key: str, default: int) -> int:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def kv_bytes_per_token(metadata: dict[str, MetadataValue], kv_type: str = "f16") -> float:
    """Keys and values of one token over every layer, from the model's metadata."""
    arch = str(metadata.get("general.architecture") or "")
    layers = _int(metadata, f"{arch}.block_count", 0)
    embedding = _int(metadata, f"{arch}.embedding_length", 0)
    heads = _int(metadata, f"{arch}.attention.head_count", 1)
    kv_heads = _int(metadata, f"{arch}.attention.head_count_kv", heads)  # per-layer arrays: assume all
    key_length = _int(metadata, f"{arch}.attention.key_length", embedding // heads)
    value_length = _int(metadata, f"{arch}.attention.value_length", embedding // heads)
    return layers * kv_heads * (key_length + value_length) * KV_TYPE_BYTES[kv_type]


def trained_context(metadata: dict[str, MetadataValue], context_length: int) -> int:
    arch = str(metadata.get("general.architecture") or "")
    return min(context_length, _int(metadata, f"{arch}.context_length", context_length))


def auto_pool_tokens(
    metadata: dict[str, MetadataValue], *, context_length: int, parallel: int, kv_type: str = "f16"
) -> int:
    """The KV pool size when LOCALLAB_KV_TOKENS is 0: what fits in AUTO_KV_BYTES (or a quarter of free
    memory), never less than one full context, never more than `parallel` full contexts."""
    per_sequence = trained_context(metadata, context_length)
    budget = min(AUTO_KV_BYTES, psutil.virtual_memory().available // 4)
    per_token = kv_bytes_per_token(metadata, kv_type) or 1.0
    tokens = max(per_sequence, min(parallel * per_sequence, int(budget / per_token)))
    return -(-tokens // _POOL_ALIGN) * _POOL_ALIGN


def estimate_memory(
    path: Path, metadata: dict[str, MetadataValue], *, pool_tokens: int, kv_type: str = "f16"
) -> MemoryEstimate:
    """Weights (the file) plus a KV pool of `pool_tokens` cells."""
    kv = int(pool_tokens * kv_bytes_per_token(metadata, kv_type))
    return MemoryEstimate(path.stat().st_size, kv, pool_tokens, kv_type)


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
        f"{e.kv_cache / MB:,.0f} MB for a pool of {e.pool_tokens} tokens in {e.kv_type}), "
        f"but only {available / MB:,.0f} MB are {where}. Lower LOCALLAB_KV_TOKENS (or set "
        "LOCALLAB_KV_TYPE=q8_0), or unload a model."
    )
