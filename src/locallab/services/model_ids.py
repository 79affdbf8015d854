"""ModelIds: what a model id names (a remote id, a catalog id, an alias, a `.gguf` file or a model folder,
by name in the models directory or by path), checked before anything is opened: a path must lie inside
the directories models may be loaded from. Also which files in the models directory a DELETE may remove.
ModelRegistry (services/registry.py) builds on it to load and unload models."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from locallab.config.catalog import CatalogEntry
from locallab.errors import InvalidRequestError, LocalLabError, ModelNotFoundError
from locallab.services.aliases import AliasStore

_CATALOG_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_MAX_PATH = 4096
_MAX_NAME = 255  # bytes in one path component, as file systems count them


@dataclass(frozen=True)
class ResolvedModel:
    """What a model id names: the engine that serves it and, for local engines, its file or folder."""

    id: str
    path: Path  # a .gguf file, a model folder, or (remote engine) nothing: Path()
    entry: CatalogEntry | None
    engine: str = "llama.cpp"  # "llama.cpp" | "transformers" | "remote"


class ModelIds:
    """Resolves model ids; holds the catalog, the aliases and the directories models may come from."""

    def __init__(
        self,
        catalog: dict[str, CatalogEntry],
        models_dir: Path,
        remote_ids: frozenset[str] = frozenset(),
        model_dirs: Sequence[Path] = (),
        aliases: AliasStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.aliases = aliases or AliasStore()  # extra names for models (Ollama's /api/copy)
        self._remote_ids = remote_ids  # ids served by the remote engine (from the server's configuration)
        self._models_dir = models_dir
        # Path ids must name something inside these (symlinks resolved): no loading /etc/... by request.
        self._allowed_dirs = [d.expanduser().resolve() for d in (models_dir, *model_dirs)]
        self._trusted: set[str] = set()

    @property
    def remote_ids(self) -> frozenset[str]:
        """Ids the remote engine serves, from the server's configuration."""
        return self._remote_ids

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    def resolve(self, model_id: str) -> ResolvedModel:
        """A remote id, catalog id, bare `name.gguf` in the models directory, a path to a `.gguf` file,
        or a path to a model folder (config.json and weights: the transformers engine)."""
        if not model_id or len(model_id) > _MAX_PATH or "\x00" in model_id:
            raise InvalidRequestError("model_id must be a catalog id or a path to a .gguf file.")
        target = self.aliases.target(model_id)
        if target is not None:  # the model it names: one load serves both names
            return self._resolve(target)
        return self._resolve(model_id)

    def _resolve(self, model_id: str) -> ResolvedModel:
        if model_id in self._remote_ids:
            return ResolvedModel(model_id, Path(), None, "remote")
        if model_id in self.catalog:
            entry = self.catalog[model_id]
            path = entry.source.path_in(self._models_dir)
            if path is None:
                raise ModelNotFoundError(
                    f"Model '{model_id}' is in the catalog but its file is not installed; "
                    f"{entry.source.install_hint(model_id)}"
                )
            return ResolvedModel(model_id, path, entry, entry.engine)
        looks_like_path = "/" in model_id or "\\" in model_id or model_id.lower().endswith(".gguf")
        if not looks_like_path and self._is_pulled_folder(model_id):
            looks_like_path = True  # a transformers model pulled into the models directory, by name
        if not looks_like_path:
            hint = (
                ""
                if _CATALOG_ID.match(model_id)
                else " Model ids use lowercase letters, digits, '.', '-', '_'."
            )
            raise ModelNotFoundError(
                f"Unknown model '{model_id}'. GET /models/available lists the models you can use.{hint}"
            )
        path = self._local_path(model_id)
        if model_id.lower().endswith(".gguf"):
            if not path.is_file():
                raise ModelNotFoundError(f"No model file at {path}.")
            return ResolvedModel(str(path), path, None)
        if (path / "config.json").is_file():
            return ResolvedModel(str(path), path, None, "transformers")
        raise InvalidRequestError(
            f"'{model_id}' is not a .gguf file or a model folder (one with config.json); "
            "LocalLab loads GGUF files and transformers model folders."
        )

    def add_alias(self, alias: str, source: str) -> str:
        """Makes `alias` name the model `source` names (an existing alias is pointed anew, as Ollama's
        copy overwrites). Returns that model's id. Blocking: it writes the aliases file."""
        target = self.resolve(source).id  # an alias of an alias names the model itself
        if not _CATALOG_ID.match(alias) or alias.endswith(".gguf"):
            raise InvalidRequestError(
                f"destination: '{alias}' cannot be a model name. Names use lowercase letters, digits, '.', "
                "'-' and '_' (at most 128, the first a letter or digit) and do not end in .gguf."
            )
        if alias in self.catalog or alias in self._remote_ids or self._is_pulled_folder(alias):
            raise InvalidRequestError(
                f"destination: '{alias}' is the name of a model of its own; choose another name."
            )
        self.aliases.set(alias, target)
        return target

    def live_aliases(self) -> list[str]:
        """Aliases whose model is there to serve (its file installed, or a remote id)."""
        live = []
        for alias in self.aliases.names():
            try:
                resolved = self.resolve(alias)
            except LocalLabError:
                continue
            if resolved.engine == "remote" or resolved.path.exists():
                live.append(alias)
        return live

    def _is_pulled_folder(self, name: str) -> bool:
        if name in (".", "..") or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME:
            return False
        try:
            return (self._models_dir / name / "config.json").is_file()
        except (OSError, ValueError):
            return False

    def trust(self, model_id: str) -> None:
        """Lets the operator's own model path (from the command line or environment) live anywhere."""
        self._trusted.add(model_id)

    def _local_path(self, model_id: str) -> Path:
        """The file or folder a path id names, symlinks resolved, inside the directories models may be
        loaded from (the models directory and LOCALLAB_MODEL_DIRS; the operator's own model anywhere)."""
        too_long = [
            part
            for part in re.split(r"[/\\]", model_id)
            if len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME
        ]
        if too_long:
            raise InvalidRequestError(f"model_id: a file or folder name is longer than {_MAX_NAME} bytes.")
        try:
            if "/" not in model_id and "\\" not in model_id:
                candidate = self._models_dir / model_id
            else:
                candidate = Path(model_id).expanduser()  # "~nobody/x" raises RuntimeError
            path = candidate.resolve()
            path.exists()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name the file system refuses
            raise InvalidRequestError(
                f"model_id: cannot use this path ({getattr(exc, 'strerror', None) or exc})."
            ) from exc
        if model_id not in self._trusted and not any(path.is_relative_to(d) for d in self._allowed_dirs):
            places = ", ".join(str(d) for d in self._allowed_dirs)
            raise InvalidRequestError(
                f"model_id: {path} is outside the directories models may be loaded from ({places}). "
                "Move the model into the models directory, or add its directory to LOCALLAB_MODEL_DIRS."
            )
        return path

    def downloaded_files(self) -> list[Path]:
        """GGUF files and transformers model folders in the models directory that no catalog entry names
        (pulled with hf://, or copied there)."""
        catalog_files = {e.source.file.rsplit("/", 1)[-1] for e in self.catalog.values()}
        try:
            found = sorted(
                p
                for p in self._models_dir.iterdir()
                if (p.suffix == ".gguf" and p.is_file()) or (p / "config.json").is_file()
            )
        except OSError:
            return []
        return [p for p in found if p.name not in catalog_files]

    def deletable_file(self, model_id: str) -> tuple[str, Path]:
        """The id and the file or model folder `DELETE /models/{id}` would remove: only ever one directly
        inside the models directory (a pulled catalog model, or a file or folder there by name or path)."""
        target = self.aliases.target(model_id)
        if target is not None:  # deleting the model's file here would break every other name of it
            raise InvalidRequestError(
                f"model_id: '{model_id}' is an alias of '{target}' (made by Ollama's POST /api/copy). "
                f'DELETE /api/delete with {{"model": "{model_id}"}} removes the alias; '
                f"DELETE /models/{target} deletes the model and its aliases."
            )
        if model_id in self.catalog:
            entry = self.catalog[model_id]
            path = entry.source.path_in(self._models_dir)
            if path is None or not path.exists():
                raise ModelNotFoundError(f"Model '{model_id}' is not installed; there is nothing to delete.")
            resolved_id = model_id
        else:
            resolved = self.resolve(model_id)
            if resolved.engine not in ("llama.cpp", "transformers"):
                raise InvalidRequestError(f"model_id: '{model_id}' is not a model LocalLab downloaded.")
            resolved_id, path = resolved.id, resolved.path
        models_dir = self._models_dir.expanduser().resolve()
        if path.resolve().parent != models_dir:
            raise InvalidRequestError(
                f"model_id: {path} is not in the models directory ({models_dir}); LocalLab deletes only "
                "models it downloaded there."
                + (" Uninstall its package with pip instead." if model_id in self.catalog else "")
            )
        return resolved_id, path
