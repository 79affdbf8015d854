"""Readiness: whether this server should be sent traffic (load balancers, Docker, Kubernetes probes).

Liveness (`/health`) only says the process answers. Readiness says requests that name no model will be
served: the default model is loaded and the server is not draining for a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from locallab.errors import LocalLabError
from locallab.services.generation import ShutdownSignal
from locallab.services.registry import ModelRegistry

logger = logging.getLogger(__name__)

ReadyState = Literal["ready", "loading", "failed", "unloaded", "draining"]


@dataclass(frozen=True)
class Readiness:
    status: ReadyState
    model: str | None
    detail: str | None  # why not ready, and what to do; None when ready

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class ReadinessCheck:
    """Loads the configured default model in the background and reports where the server stands.

    A default model that cannot load leaves the server running and not ready, with the reason; a later
    `POST /models/load` of any model makes it ready."""

    def __init__(self, registry: ModelRegistry, shutdown: ShutdownSignal, default_model: str) -> None:
        self._registry = registry
        self._shutdown = shutdown
        self._default_model = default_model
        self._startup: asyncio.Task[None] | None = None
        self._failure: str | None = None

    def start(self) -> asyncio.Task[None] | None:
        """Starts loading the configured default model; returns the task (None when none is configured)."""
        if self._default_model:
            self._startup = asyncio.create_task(self._load_default())
        return self._startup

    async def _load_default(self) -> None:
        try:
            await self._registry.load(self._default_model)
        except LocalLabError as exc:
            self._failure = exc.detail
            self._registry.last_error = exc.detail
            logger.error("could not load the default model %s: %s", self._default_model, exc.detail)
        except Exception:
            # A bug, not the user's input; still the server keeps running and says it is not ready.
            self._failure = "an internal error (the server log has the traceback)"
            logger.exception("could not load the default model %s", self._default_model)

    def state(self) -> Readiness:
        current = self._registry.current
        model = current.id if current is not None else (self._default_model or None)
        if self._shutdown.deadline is not None:
            return Readiness("draining", model, "The server is shutting down and takes no new requests.")
        if current is not None:
            return Readiness("ready", current.id, None)
        if not self._default_model:
            # Started with no default model on purpose: requests name theirs, and load it on demand.
            return Readiness("ready", None, None)
        if self._startup is not None and not self._startup.done():
            return Readiness(
                "loading", model, f"The default model '{self._default_model}' is still loading; retry soon."
            )
        if self._registry.status == "loading":  # e.g. POST /models/load after a failed start
            return Readiness("loading", model, "A model is loading; retry soon.")
        if self._failure is not None:
            return Readiness(
                "failed",
                model,
                f"The default model '{self._default_model}' could not be loaded: {self._failure} "
                "Fix the cause and restart, or load a model with POST /models/load.",
            )
        return Readiness(
            "unloaded", model, "No default model is loaded (it was unloaded). POST /models/load loads one."
        )
