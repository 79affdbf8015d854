"""Model aliases: extra names for models LocalLab already has (Ollama's `POST /api/copy`).

An alias names a model id (a catalog id, a model file's path, a remote id); it serves the same
weights, loaded once for both names. Aliases persist in a small JSON file in the models directory,
beside the models they name, written whole and atomically (a crash never leaves half a file).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

FILE_NAME = "aliases.json"


class AliasStore:
    """alias -> model id. `path` None keeps them in memory only (tests, registries without a server)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()  # writes run in worker threads; one at a time
        self._aliases: dict[str, str] = self._read() if path is not None else {}

    def _read(self) -> dict[str, str]:
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file must not stop the server: say so, go on
            logger.warning("ignoring the model aliases in %s: %s", self._path, exc)
            return {}
        found = data.get("aliases") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            logger.warning("ignoring the model aliases in %s: no 'aliases' object", self._path)
            return {}
        return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}

    def _write(self, aliases: dict[str, str]) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_name(f".{self._path.name}.partial")
        partial.write_text(json.dumps({"aliases": aliases}, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(partial, self._path)

    def target(self, alias: str) -> str | None:
        return self._aliases.get(alias)

    def names(self) -> list[str]:
        return sorted(self._aliases)

    def set(self, alias: str, model_id: str) -> None:
        """Adds an alias or points an existing one elsewhere (blocking: it writes the file)."""
        with self._lock:
            self._write({**self._aliases, alias: model_id})
            self._aliases[alias] = model_id

    def remove(self, *aliases: str) -> None:
        """Blocking: it writes the file."""
        with self._lock:
            kept = {k: v for k, v in self._aliases.items() if k not in aliases}
            if kept != self._aliases:
                self._write(kept)
                self._aliases = kept

    def naming(self, model_id: str) -> list[str]:
        """The aliases of one model id."""
        return sorted(k for k, v in self._aliases.items() if v == model_id)
