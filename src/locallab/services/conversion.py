"""Turning a catalog model that ships as a zipped sentence-transformers folder (`ConvertedSource`) into a
GGUF file in the models directory.

The needed members of the zip are extracted into `<models_dir>/.partial/`, converted into a partial file
there, checked, and only then moved into place; the staging files are removed whatever happens, so a
failed or cancelled conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from locallab.config.catalog import CatalogEntry, ConvertedSource
from locallab.engines.bert_gguf import Precision, convert_bert_folder
from locallab.engines.gguf import check_gguf_header
from locallab.errors import ModelLoadError, ModelNotFoundError

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
# What the converter reads from a sentence-transformers folder; nothing else leaves the zip.
_NEEDED = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")
_MAX_MEMBER_BYTES = 8 << 30


def _folder_prefix(names: list[str]) -> str:
    """The folder inside the zip that holds config.json (the top level, or one named folder)."""
    candidates = sorted(
        (str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name == "config.json"),
        key=lambda p: (p.count("/"), p),
    )
    for parent in candidates:
        prefix = "" if parent == "." else parent + "/"
        if prefix + "model.safetensors" in names or prefix + "tokenizer.json" in names:
            return prefix
    return ""


def extract_folder(archive: Path, destination: Path) -> Path:
    """Extracts the files the converter needs (and the pooling module's config) into `destination`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            prefix = _folder_prefix(names)
            wanted = {prefix + n: n for n in _NEEDED}
            for name in names:  # the pooling module's config, e.g. 1_Pooling/config.json
                rest = name[len(prefix) :] if name.startswith(prefix) else None
                parts = PurePosixPath(rest).parts if rest else ()
                if len(parts) == 2 and parts[1] == "config.json" and parts[0].endswith("Pooling"):
                    wanted[name] = rest  # type: ignore[assignment]
            for member, relative in wanted.items():
                if member not in names:
                    continue
                info = zf.getinfo(member)
                if info.file_size > _MAX_MEMBER_BYTES:
                    raise ModelLoadError(f"{archive.name}: {member} claims {info.file_size} bytes.")
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"Cannot read the model archive {archive}: {exc}.") from exc
    return destination


def convert_packaged(
    entry: CatalogEntry,
    models_dir: Path,
    report: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Blocking: the entry's GGUF file in the models directory, converted now unless it already is."""
    source = entry.source
    assert isinstance(source, ConvertedSource)
    destination = models_dir / source.file
    if destination.is_file():
        return destination
    archive = source.archive_path()
    if archive is None:
        raise ModelNotFoundError(
            f"Model '{entry.id}' is converted from the PyPI package {source.pip}, which is not installed; "
            f"{source.install_hint(entry.id)}"
        )
    staging = models_dir / PARTIAL_DIR
    staging.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]  # two conversions at once never share files; the last rename wins
    folder = staging / f"{entry.id}.{token}.src"
    partial = staging / f"{source.file}.{token}.partial"
    try:
        extract_folder(archive, folder)
        precision: Precision = "f32" if source.precision == "f32" else "f16"
        convert_bert_folder(
            folder, partial, name=entry.name, precision=precision, report=report, cancel=cancel
        )
        check_gguf_header(partial)
        os.replace(partial, destination)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        partial.unlink(missing_ok=True)
    logger.info("converted %s from %s into %s", entry.id, source.pip, destination)
    return destination
