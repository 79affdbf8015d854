"""Prometheus series for the remote engine's upstreams (`locallab_upstream_*`): latency to the first
token, requests by outcome, errors by kind, and each upstream's state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from locallab.engines.remote.pool import Outcome
from locallab.engines.remote.wire import ErrorKind

_FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class UpstreamMetrics:
    """The server's UpstreamObserver: every remote engine reports here."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model", "upstream"]
        self.requests = Counter(
            "locallab_upstream_requests",
            "Requests sent to upstreams, by outcome (ok, error_before_first_token, "
            "error_after_first_token, refused, cancelled).",
            [*labels, "outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "locallab_upstream_errors",
            "Upstream failures by kind (connect, timeout, status, stream, health).",
            [*labels, "kind"],
            registry=registry,
        )
        self.first_token = Histogram(
            "locallab_upstream_first_token_seconds",
            "From sending a request upstream to its first text.",
            labels,
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.available = Gauge(
            "locallab_upstream_available",
            "1 when the upstream passes its health probe and its circuit is closed, else 0.",
            labels,
            registry=registry,
        )
        self.outstanding = Gauge(
            "locallab_upstream_outstanding", "Requests running on the upstream.", labels, registry=registry
        )

    def upstream_request(self, model: str, upstream: str, outcome: Outcome) -> None:
        self.requests.labels(model, upstream, outcome).inc()

    def upstream_first_token(self, model: str, upstream: str, seconds: float) -> None:
        self.first_token.labels(model, upstream).observe(seconds)

    def upstream_error(self, model: str, upstream: str, kind: ErrorKind) -> None:
        self.errors.labels(model, upstream, kind).inc()

    def upstream_state(self, model: str, upstream: str, available: bool, outstanding: int) -> None:
        self.available.labels(model, upstream).set(1 if available else 0)
        self.outstanding.labels(model, upstream).set(outstanding)
