"""ModelRegistry: keeps up to `max_loaded` models loaded. It loads them off the event loop (once, however
many requests ask), on demand, and unloads the least recently used or idle ones. The default model answers
requests that name none. What an id names is resolved by ModelIds (services/model_ids.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from locallab.config.catalog import CatalogEntry, ConvertedSource
from locallab.engines.base import Engine, embeds
from locallab.engines.gguf import check_gguf_header, is_embedding_model
from locallab.errors import (
    LocalLabError,
    ModelLoadError,
    ModelNotLoadedError,
    NoModelLoadedError,
    ServerBusyError,
)
from locallab.services.aliases import AliasStore
from locallab.services.conversion import convert_packaged
from locallab.services.metrics import Metrics
from locallab.services.model_ids import ModelIds, ResolvedModel

logger = logging.getLogger(__name__)

ModelStatus = Literal["ready", "loading", "none"]
Capability = Literal["completions", "embeddings"]

# Blocking: builds the engine for a resolved model. Runs in a worker thread.
EngineLoader = Callable[[ResolvedModel], Engine]


@dataclass(frozen=True)
class LoadedModel:
    id: str
    engine: Engine
    loaded_at: datetime
    entry: CatalogEntry | None


class ModelRegistry(ModelIds):
    """Keeps up to `max_loaded` models loaded: loads them off the event loop, once however many requests
    ask, and unloads the least recently used or idle ones."""

    def __init__(
        self,
        catalog: dict[str, CatalogEntry],
        loader: EngineLoader,
        models_dir: Path,
        metrics: Metrics | None = None,
        max_loaded: int = 1,
        remote_ids: frozenset[str] = frozenset(),
        model_dirs: Sequence[Path] = (),
        aliases: AliasStore | None = None,
    ) -> None:
        super().__init__(catalog, models_dir, remote_ids, model_dirs, aliases)
        self._metrics = metrics
        self._loader = loader
        self._max_loaded = max_loaded
        self._current: LoadedModel | None = None  # the default model: requests without a model id
        self._loaded: dict[str, LoadedModel] = {}
        self._last_used: dict[str, float] = {}
        self._keep_alive: dict[str, float] = {}  # per model, set by requests; else the server's default
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}  # one load per model, however many wait
        self._errors: dict[str, str] = {}
        self._loading_default: str | None = None
        self._background: set[asyncio.Task[LoadedModel]] = set()
        self._retired: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def status(self) -> ModelStatus:
        if self._loads:
            return "loading"
        return "ready" if self._current is not None else "none"

    def get(self, model_id: str | None) -> LoadedModel:
        """An already loaded model (None: the default one). Raises for models that are not loaded."""
        if model_id is None:
            if self._current is None:
                detail = "No model is loaded"
                if self._loading_default is not None:
                    detail = f"The model '{self._loading_default}' is still loading; retry in a few seconds"
                elif self.last_error:
                    detail += f" (the last load failed: {self.last_error})"
                raise NoModelLoadedError(f"{detail}. POST /models/load loads one.")
            return self._touch(self._current)
        loaded = self._loaded.get(model_id)
        if loaded is None:
            resolved = self.resolve(model_id)
            loaded = self._loaded.get(resolved.id)
            if loaded is None:
                raise ModelNotLoadedError(
                    f"Model '{resolved.id}' is not loaded. Load it: POST /models/load "
                    f'with {{"model_id": "{resolved.id}"}}.'
                )
        return self._touch(loaded)

    async def acquire(self, model_id: str | None, keep_alive: float | None = None) -> LoadedModel:
        """The model a request asked for, loading a known model on demand (None: the default one).

        `keep_alive`: seconds the model stays loaded once idle, from now on (None: unchanged)."""
        if model_id is None:
            loaded = self.get(None)
        else:
            try:
                loaded = self.get(model_id)
            except ModelNotLoadedError:
                loaded = await self.load(model_id, make_default=False)
        if keep_alive is not None:
            self.set_keep_alive(loaded.id, keep_alive)
        return loaded

    def set_keep_alive(self, model_id: str, seconds: float) -> None:
        """Seconds `model_id` stays loaded once idle (until it unloads; then the default again)."""
        self._keep_alive[model_id] = seconds

    def idle_seconds_left(self, model_id: str, default_keep_alive: float) -> float | None:
        """Seconds until a loaded model would be unloaded for idleness; None: never (the default model)."""
        loaded = self._loaded.get(model_id)
        if loaded is None or loaded is self._current:
            return None
        keep = self._keep_alive.get(model_id, default_keep_alive)
        idle = time.monotonic() - self._last_used.get(model_id, time.monotonic())
        return None if keep == float("inf") else max(0.0, keep - idle)

    def _touch(self, loaded: LoadedModel) -> LoadedModel:
        self._last_used[loaded.id] = time.monotonic()
        return loaded

    async def load(self, model_id: str, *, make_default: bool = True) -> LoadedModel:
        """Loads a model (once, however many ask at the same time); on failure nothing else changes."""
        resolved = self.resolve(model_id)
        loaded = self._loaded.get(resolved.id)
        if loaded is None:
            task = self._loads.get(resolved.id)
            if task is None:
                task = asyncio.create_task(self._load(resolved, make_default))
                self._loads[resolved.id] = task
                task.add_done_callback(lambda _: self._loads.pop(resolved.id, None))
            loaded = await asyncio.shield(task)
        if make_default and self._current is not loaded:
            self._current = loaded
            logger.info("model %s is now the default", loaded.id)
        return self._touch(loaded)

    def start_load(self, model_id: str, *, make_default: bool = True) -> None:
        """Loads in the background; progress and failure show in `load_state`."""
        task = asyncio.create_task(self.load(model_id, make_default=make_default))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # the error is kept in load_state

    def canonical_id(self, model_id: str) -> str:
        """The id a model is known by: as given when it is loaded, else as resolved (a path made absolute)."""
        return model_id if model_id in self._loaded else self.resolve(model_id).id

    def load_state(self, model_id: str) -> tuple[str, str | None]:
        """("ready" | "loading" | "failed" | "not_loaded", error detail or None)."""
        model_id = self.canonical_id(model_id)
        if model_id in self._loaded:
            return "ready", None
        if model_id in self._loads:
            return "loading", None
        if model_id in self._errors:
            return "failed", self._errors[model_id]
        return "not_loaded", None

    async def _load(self, resolved: ResolvedModel, make_default: bool) -> LoadedModel:
        logger.info("loading model %s from %s", resolved.id, resolved.path.name)
        if make_default:
            self._loading_default = resolved.id
        started = time.monotonic()
        try:
            self._check_room(resolved.id)
            if resolved.entry is not None:
                path = await asyncio.to_thread(self._materialize, resolved.entry)
                resolved = replace(resolved, path=path)
            engine = await asyncio.to_thread(self._loader, resolved)
        except BaseException as exc:
            if self._metrics is not None:
                self._metrics.load_failures.inc()
            if isinstance(exc, LocalLabError):
                self._errors[resolved.id] = exc.detail
                self.last_error = exc.detail
            raise
        finally:
            if self._loading_default == resolved.id:
                self._loading_default = None
        if self._metrics is not None:
            self._metrics.load_seconds.observe(time.monotonic() - started)
        loaded = LoadedModel(resolved.id, engine, datetime.now(timezone.utc), resolved.entry)
        # Room is made only now: a load that fails must leave every serving model in place.
        await self._make_room(resolved.id)
        self._loaded[resolved.id] = loaded
        self._errors.pop(resolved.id, None)
        self.last_error = None
        logger.info("model %s loaded (%s)", resolved.id, engine.engine_name)
        return loaded

    def _materialize(self, entry: CatalogEntry) -> Path:
        try:
            if isinstance(entry.source, ConvertedSource):  # converted on first use when not pulled yet
                return convert_packaged(entry, self._models_dir)
            return entry.source.materialize(self._models_dir)
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(f"Cannot prepare the file of '{entry.id}': {exc}") from exc

    def _evictable(self) -> list[LoadedModel]:
        """Models that may make room, least recently used first: idle ones, the default one last."""
        idle = [m for m in self._loaded.values() if m is not self._current and _idle(m)]
        if not idle and self._current is not None and _idle(self._current):
            idle = [self._current]
        return sorted(idle, key=lambda m: self._last_used.get(m.id, 0.0))

    def _check_room(self, incoming: str) -> None:
        if len(self._loaded) + 1 > self._max_loaded and not self._evictable():
            raise ServerBusyError(
                f"Cannot load '{incoming}': {len(self._loaded)} models are loaded "
                "(LOCALLAB_MAX_LOADED_MODELS) and all are answering requests. Retry later, or unload one."
            )

    async def _make_room(self, incoming: str) -> None:
        """Unloads least recently used idle models until the incoming one fits the limit."""
        while len(self._loaded) + 1 > self._max_loaded and (evictable := self._evictable()):
            logger.info("unloading model %s to make room for %s", evictable[0].id, incoming)
            await self.unload(evictable[0].id)

    async def unload(self, model_id: str) -> None:
        """Frees a model; requests already running on it finish first."""
        resolved_id = self.canonical_id(model_id)
        loaded = self._loaded.pop(resolved_id, None)
        if loaded is None:
            raise ModelNotLoadedError(f"Model '{resolved_id}' is not loaded.")
        self._last_used.pop(resolved_id, None)
        self._keep_alive.pop(resolved_id, None)
        if self._current is loaded:
            self._current = None
        task = asyncio.create_task(loaded.engine.close())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def unload_idle(self, keep_alive: float) -> list[str]:
        """Unloads models (not the default one) unused for their keep-alive (a request's, else
        `keep_alive` seconds); returns their ids."""
        now = time.monotonic()
        expired = [
            m.id
            for m in list(self._loaded.values())
            if m is not self._current
            and _idle(m)
            and now - self._last_used.get(m.id, now) >= self._keep_alive.get(m.id, keep_alive)
        ]
        for model_id in expired:
            logger.info("unloading model %s: idle for %.0f s", model_id, keep_alive)
            await self.unload(model_id)
        return expired

    def capabilities(self, model_id: str, path: Path | None = None) -> list[Capability]:
        """What a model does: generate text, or make embeddings. From the loaded engine, the catalog,
        or (a file in the models directory at `path`) the GGUF's own metadata."""
        loaded = self._loaded.get(model_id)
        if loaded is not None:
            makes_vectors = embeds(loaded.engine)
        elif model_id in self.catalog:
            makes_vectors = self.catalog[model_id].embedding
        elif path is not None and path.suffix == ".gguf" and path.is_file():
            try:
                makes_vectors = is_embedding_model(check_gguf_header(path))
            except ModelLoadError:
                makes_vectors = False
        else:
            makes_vectors = False
        return ["embeddings"] if makes_vectors else ["completions"]

    @property
    def models(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    async def close(self) -> None:
        for task in list(self._loads.values()) + list(self._background):
            task.cancel()
        loaded, self._loaded, self._current = list(self._loaded.values()), {}, None
        await asyncio.gather(*(m.engine.close() for m in loaded), return_exceptions=True)
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)


def _idle(model: LoadedModel) -> bool:
    load = model.engine.load
    return load.active + load.queued == 0
