"""What Ollama's model listings say about our models: name, size, digest, details, model_info.

`digest` is the catalog's sha256 of the file where it has one; otherwise a sha256 of the file's path,
size and modification time (hashing a multi-gigabyte file on every listing would be too slow), so it
still changes when the file does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from locallab.api.ollama import wire
from locallab.engines.base import embeds
from locallab.engines.gguf import MetadataValue, check_gguf_header
from locallab.errors import ModelLoadError, ModelNotFoundError
from locallab.services.downloads import size_on_disk
from locallab.services.generation import chat_template_of
from locallab.services.registry import ModelRegistry

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class ModelDescription:
    name: str
    size: int
    digest: str
    modified_at: datetime
    details: dict[str, Any]
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    path: Path | None = None

    def tag(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": wire.rfc3339(self.modified_at),
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }


def listed_ids(registry: ModelRegistry) -> list[str]:
    """Catalog models whose file is on disk now (one assembled or converted on first use is listed once
    pulled, as Ollama lists pulled models), then loaded ones and remote ones."""
    ids = []
    for entry in registry.catalog.values():
        path = entry.source.path_in(registry.models_dir)
        if path is not None and path.exists():
            ids.append(entry.id)
    ids += [str(p) for p in registry.downloaded_files() if p.suffix == ".gguf"]  # hf:// and hf.co pulls
    ids += [m.id for m in registry.models if m.id not in ids]
    ids += [i for i in sorted(registry.remote_ids) if i not in ids]
    return ids + registry.live_aliases()


def _parameter_size(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + unit
    return str(count)


def describe(registry: ModelRegistry, model_id: str) -> ModelDescription:
    """Blocking (reads the file's header): call it in a thread."""
    resolved = registry.resolve(model_id)
    entry = resolved.entry
    path = resolved.path if resolved.engine != "remote" and resolved.path.exists() else None
    metadata: dict[str, MetadataValue] = {}
    if path is not None and path.is_file() and path.suffix == ".gguf":
        try:
            metadata = check_gguf_header(path)
        except ModelLoadError:
            metadata = {}
    size = size_on_disk(path) if path is not None else 0
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) if path is not None else EPOCH
    digest = entry.sha256 if entry and entry.sha256 else ""
    if not digest:
        digest = hashlib.sha256(f"{path}:{size}:{mtime.timestamp()}".encode()).hexdigest()
    family = str(metadata.get("general.architecture") or (resolved.engine if not metadata else ""))
    count = metadata.get("general.parameter_count")
    loaded = next((m for m in registry.models if m.id == resolved.id), None)
    if entry is not None:
        parameter_size, quantization = entry.parameters, entry.quantization
    elif loaded is not None:
        parameter_size = _parameter_size(loaded.engine.info.parameters)
        quantization = loaded.engine.info.quantization
    else:
        parameter_size = _parameter_size(count) if isinstance(count, int) else ""
        quantization = ""
    details = {
        "parent_model": "",
        "format": "gguf" if metadata else resolved.engine,
        "family": family,
        "families": [family] if family else [],
        "parameter_size": parameter_size,
        "quantization_level": quantization,
    }
    # a file pulled into the models directory by name is listed by its name there (or its hf.co name)
    models_dir = registry.models_dir.expanduser().resolve()
    by_file = path is not None and entry is None and path.parent == models_dir
    name = wire.ollama_name(path.name if path is not None and by_file else resolved.id)
    if registry.aliases.target(model_id) is not None:  # an alias is listed under its own name
        name = wire.ollama_name(model_id)
    return ModelDescription(name, size, digest, mtime, details, metadata, path)


def show(registry: ModelRegistry, name: str) -> dict[str, Any]:
    """POST /api/show's answer. Blocking: call it in a thread."""
    model_id = wire.model_id(name)
    try:
        desc = describe(registry, model_id)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model '{name}' not found. {exc.detail}") from exc
    resolved_id = registry.resolve(model_id).id
    loaded = next((m for m in registry.models if m.id == resolved_id), None)
    template = chat_template_of(loaded) if loaded else None
    entry = registry.catalog.get(resolved_id)
    if template is None and entry is not None:
        template = entry.chat_template
    vectors = embeds(loaded.engine) if loaded else "embeddings" in registry.capabilities(resolved_id)
    # tool calling works on every model that can chat (services/tools), i.e. one with a chat template
    chats = bool(template) or "tokenizer.chat_template" in desc.metadata
    capabilities = ["embedding"] if vectors else ["completion", "tools"] if chats else ["completion"]
    parameters = "\n".join(f"{k:<15} {v}" for k, v in wire.DEFAULTS.items())
    return {
        "modelfile": f"# LocalLab model {desc.name}\nFROM {desc.path or resolved_id}\n",
        "parameters": parameters,
        "template": template or "",
        "license": entry.license if entry else "",
        "details": desc.details,
        "model_info": {k: v for k, v in desc.metadata.items() if v is not None},
        "capabilities": capabilities,
        "modified_at": wire.rfc3339(desc.modified_at),
    }
