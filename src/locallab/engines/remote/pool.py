"""The upstreams of one remote model: health-checked, each behind a circuit breaker, and picked by
least outstanding requests (ties in turn, so an idle pool is used evenly)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from locallab.config.remote import RemoteModelConfig
from locallab.engines.remote.breaker import CircuitBreaker
from locallab.engines.remote.wire import ErrorKind

logger = logging.getLogger(__name__)

# ok: answered; error_before_first_token: failed before any text (the request went to another upstream,
# if one was left); error_after_first_token: the client got an error event; refused: the upstream
# refused the request itself (4xx: it is up); cancelled: the client left.
Outcome = Literal["ok", "error_before_first_token", "error_after_first_token", "refused", "cancelled"]


class UpstreamObserver(Protocol):
    """Where upstream latency, errors and state go (the server's metrics)."""

    def upstream_request(self, model: str, upstream: str, outcome: Outcome) -> None: ...

    def upstream_first_token(self, model: str, upstream: str, seconds: float) -> None: ...

    def upstream_error(self, model: str, upstream: str, kind: ErrorKind) -> None: ...

    def upstream_state(self, model: str, upstream: str, available: bool, outstanding: int) -> None: ...


@dataclass(eq=False)
class Upstream:
    url: str  # OpenAI base URL, ending in /v1
    name: str  # what clients are told ("upstream 2"): internal addresses stay in logs and metrics
    breaker: CircuitBreaker
    outstanding: int = 0
    healthy: bool = True  # the last health probe answered (optimistic until the first one)

    def available(self) -> bool:
        return self.healthy and self.breaker.allows()


class UpstreamPool:
    def __init__(
        self,
        config: RemoteModelConfig,
        client: httpx.AsyncClient,
        headers: dict[str, str],
        observer: UpstreamObserver | None = None,
    ) -> None:
        self.config = config
        self.upstreams = [
            Upstream(url, f"upstream {i + 1}", CircuitBreaker(config.max_failures, config.cooldown))
            for i, url in enumerate(config.upstreams)
        ]
        self._client = client
        self._headers = headers
        self._observer = observer
        self._turn = 0
        self._health: asyncio.Task[None] | None = None
        for upstream in self.upstreams:
            self._report(upstream)

    @property
    def outstanding(self) -> int:
        return sum(u.outstanding for u in self.upstreams)

    def pick(self, exclude: set[Upstream]) -> Upstream | None:
        """The available upstream with the fewest outstanding requests, or None."""
        n = len(self.upstreams)
        self._turn = (self._turn + 1) % n
        candidates = [
            (u.outstanding, (i - self._turn) % n, u)
            for i, u in enumerate(self.upstreams)
            if u not in exclude and u.available()
        ]
        return min(candidates, key=lambda c: c[:2])[2] if candidates else None

    def begin(self, upstream: Upstream) -> None:
        upstream.outstanding += 1
        upstream.breaker.begin()
        self._report(upstream)

    def end(self, upstream: Upstream, outcome: Outcome, error: ErrorKind | None = None) -> None:
        upstream.outstanding -= 1
        if outcome in ("ok", "refused"):
            upstream.breaker.succeeded()
        elif outcome == "cancelled":
            upstream.breaker.released()
        else:
            upstream.breaker.failed()
            if upstream.breaker.state != "closed":
                failures = upstream.breaker.failures
                logger.warning("upstream %s: circuit open after %d failures", upstream.url, failures)
        if self._observer is not None:
            self._observer.upstream_request(self.config.id, upstream.url, outcome)
            if error is not None:
                self._observer.upstream_error(self.config.id, upstream.url, error)
        self._report(upstream)

    def first_token(self, upstream: Upstream, seconds: float) -> None:
        if self._observer is not None:
            self._observer.upstream_first_token(self.config.id, upstream.url, seconds)

    def _report(self, upstream: Upstream) -> None:
        if self._observer is not None:
            self._observer.upstream_state(
                self.config.id, upstream.url, upstream.available(), upstream.outstanding
            )

    def start_health_checks(self) -> None:
        """Starts probing on the running event loop (once; engines are built in a worker thread)."""
        if self.config.health_interval > 0 and (self._health is None or self._health.done()):
            self._health = asyncio.get_running_loop().create_task(self._check_forever())

    async def _check_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.probe(u) for u in self.upstreams))
            await asyncio.sleep(self.config.health_interval)

    async def probe(self, upstream: Upstream) -> None:
        """GET <upstream>/models. A busy upstream may answer it slowly (llama-cpp-python's server waits
        for its running generation), so a timeout marks it down only while it has nothing of ours."""
        timeout = httpx.Timeout(5.0, connect=self.config.connect_timeout)
        try:
            url = f"{upstream.url}/models"
            response = await self._client.get(url, headers=self._headers, timeout=timeout)
            healthy = response.status_code == 200
        except httpx.TimeoutException:
            healthy = upstream.outstanding > 0 and upstream.healthy
        except httpx.HTTPError:
            healthy = False
        if healthy != upstream.healthy:
            logger.warning("upstream %s is %s", upstream.url, "up" if healthy else "down")
            if not healthy and self._observer is not None:
                self._observer.upstream_error(self.config.id, upstream.url, "health")
        upstream.healthy = healthy
        self._report(upstream)

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._health
