"""Prometheus series (`locallab_*`) for one app: requests, tokens, latency, load, models."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from locallab.services.upstream_metrics import UpstreamMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TOKEN_GAP_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Its own registry, so two apps in one process (tests) never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "locallab_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "locallab_rate_limited", "Requests refused by the rate limiter.", registry=r
        )
        self.prompt_tokens = Counter("locallab_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.cached_tokens = Counter(
            "locallab_cached_prompt_tokens", "Prompt tokens reused from the KV cache.", registry=r
        )
        self.generated_tokens = Counter("locallab_generated_tokens", "Tokens generated.", registry=r)
        self.generations = Counter(
            "locallab_generations", "Finished generations by finish reason.", ["finish_reason"], registry=r
        )
        self.ttft = Histogram(
            "locallab_time_to_first_token_seconds",
            "From admission to the first text.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "locallab_inter_token_latency_seconds",
            "Time between generated tokens.",
            buckets=_TOKEN_GAP_BUCKETS,
            registry=r,
        )
        self.embedding_requests = Counter(
            "locallab_embedding_requests", "Embedding requests answered.", registry=r
        )
        self.embedding_inputs = Counter(
            "locallab_embedding_inputs", "Texts turned into embedding vectors.", registry=r
        )
        self.embedding_tokens = Counter(
            "locallab_embedding_tokens", "Tokens read by embedding models.", registry=r
        )
        self.active = Gauge("locallab_requests_active", "Generations holding a slot.", registry=r)
        self.queued = Gauge("locallab_requests_queued", "Generations waiting for a slot.", registry=r)
        self.loaded_models = Gauge("locallab_models_loaded", "Models loaded.", registry=r)
        self.load_seconds = Histogram(
            "locallab_model_load_seconds", "Model load durations.", buckets=_LOAD_BUCKETS, registry=r
        )
        self.load_failures = Counter("locallab_model_load_failures", "Model loads that failed.", registry=r)
        self.kv_pool_size = Gauge(
            "locallab_kv_pool_tokens", "KV pool size in tokens (llama.cpp models, summed).", registry=r
        )
        self.kv_pool_used = Gauge(
            "locallab_kv_pool_used_tokens",
            "KV pool cells holding a token: running requests and cached prefixes.",
            registry=r,
        )
        self.kv_preemptions = Gauge(
            "locallab_kv_preemptions",
            "Running requests paused for KV pool room since their models loaded (summed).",
            registry=r,
        )
        self.upstream = UpstreamMetrics(r)  # the remote engine's upstreams

    def watch(
        self, active: Callable[[], float], queued: Callable[[], float], loaded: Callable[[], float]
    ) -> None:
        """Gauges read at scrape time from the live objects."""
        self.active.set_function(active)
        self.queued.set_function(queued)
        self.loaded_models.set_function(loaded)

    def watch_kv_pool(
        self, size: Callable[[], float], used: Callable[[], float], preemptions: Callable[[], float]
    ) -> None:
        self.kv_pool_size.set_function(size)
        self.kv_pool_used.set_function(used)
        self.kv_preemptions.set_function(preemptions)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
