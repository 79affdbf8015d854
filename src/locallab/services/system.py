"""System information: this machine, this process and what the server has done."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import psutil

from locallab import __version__
from locallab.engines.base import KvPoolUsage
from locallab.services.registry import ModelRegistry
from locallab.services.stats import Stats


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def kv_pool_info(engine: object) -> dict[str, Any] | None:
    """The KV pool of an engine that has one (llama.cpp): its size and use in tokens."""
    pool = getattr(engine, "kv_pool", None)
    if not isinstance(pool, KvPoolUsage):
        return None
    return {
        "size_tokens": pool.size,
        "used_tokens": pool.used,
        "kv_type": pool.kv_type,
        "prefix_cache": pool.prefix_cache,
        "deterministic": pool.deterministic,
        "evictions": pool.evictions,
        "preemptions": pool.preemptions,
    }


class SystemInfo:
    def __init__(self, registry: ModelRegistry, stats: Stats) -> None:
        self._registry = registry
        self._stats = stats
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # primes the counter: later calls measure since the last one
        psutil.cpu_percent(None)
        self._cpu_model = _cpu_model()

    def snapshot(self) -> dict[str, Any]:
        """Blocking for a few milliseconds (reads /proc): call from a worker thread."""
        memory = psutil.virtual_memory()
        rss = self._process.memory_info().rss
        current = self._registry.current
        loads = [m.engine.load for m in self._registry.models]
        stats = self._stats
        return {
            "cpu_usage": psutil.cpu_percent(None),
            "memory_usage": memory.percent,
            "gpu_info": None,
            "active_model": current.id if current else None,
            "uptime": round(stats.uptime, 3),
            "request_count": stats.requests_total,
            "cpu": {"cores": psutil.cpu_count(logical=True), "model": self._cpu_model},
            "memory": {"total": memory.total, "available": memory.available, "process_rss": rss},
            "platform": {
                "system": platform.system(),
                "release": platform.release(),
                "machine": platform.machine(),
            },
            "versions": {
                "locallab": __version__,
                "python": sys.version.split()[0],
                "llama_cpp_python": _version("llama_cpp_python"),
            },
            "requests": {
                "total": stats.requests_total,
                "active": sum(load.active for load in loads),
                "queued": sum(load.queued for load in loads),
            },
            "parallel": current.engine.load.parallel if current else None,
            "kv_pool": kv_pool_info(current.engine) if current else None,
            "loaded_models": [m.id for m in self._registry.models],
            "tokens": {"prompt": stats.prompt_tokens, "generated": stats.generated_tokens},
        }
