"""A circuit breaker for one upstream: after `max_failures` failures in a row it opens, and the
upstream gets no requests for `cooldown` seconds; then one trial request decides (closed again on
success, open for another cooldown on failure)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, max_failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.cooldown = cooldown
        self._clock = clock
        self.failures = 0  # in a row
        self._opened_at: float | None = None
        self._trial = False  # a trial request is running while half open

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def allows(self) -> bool:
        """Whether a request may go to this upstream now."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial)

    def begin(self) -> None:
        """A request is sent; while half open it is the one trial."""
        if self.state == "half_open":
            self._trial = True

    def succeeded(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._trial = False

    def failed(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.max_failures:
            self._opened_at = self._clock()
        self._trial = False

    def released(self) -> None:
        """A request ended without telling (cancelled by its client): a trial may be tried again."""
        self._trial = False
