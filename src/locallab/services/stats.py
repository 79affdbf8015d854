"""Counters of what the server has done: requests and tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    requests_total: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0

    def request_received(self) -> None:
        self.requests_total += 1

    def generation_finished(self, prompt_tokens: int, generated_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += generated_tokens

    @property
    def uptime(self) -> float:
        return time.time() - self.started_at
