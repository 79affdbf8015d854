"""The sentence-transformers -> GGUF converter, checked against the source folder of the real model; and
malformed folders, which fail with a clear reason and leave nothing behind."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest

from locallab.config.catalog import CatalogEntry, ConvertedSource
from locallab.engines.bert_gguf import convert_bert_folder
from locallab.engines.safetensors_file import open_safetensors
from locallab.errors import ModelLoadError
from locallab.services.conversion import convert_packaged
from tests.embedding_model import converted_gguf, source_folder


@pytest.fixture(scope="module")
def reader() -> gguf.GGUFReader:
    return gguf.GGUFReader(converted_gguf())


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.get_field(key).contents()  # type: ignore[union-attr]


def test_metadata_comes_from_config_and_pooling(reader: gguf.GGUFReader) -> None:
    config = json.loads((source_folder() / "config.json").read_text())
    assert _field(reader, "general.architecture") == "bert"
    assert _field(reader, "bert.context_length") == config["max_position_embeddings"]
    assert _field(reader, "bert.embedding_length") == config["hidden_size"]
    assert _field(reader, "bert.feed_forward_length") == config["intermediate_size"]
    assert _field(reader, "bert.block_count") == config["num_hidden_layers"]
    assert _field(reader, "bert.attention.head_count") == config["num_attention_heads"]
    assert _field(reader, "bert.attention.causal") is False
    assert _field(reader, "bert.pooling_type") == 1  # mean, from 1_Pooling/config.json
    assert _field(reader, "tokenizer.ggml.normalizer.lowercase") is True


def test_vocabulary_is_the_wordpiece_vocabulary_in_phantom_space_form(reader: gguf.GGUFReader) -> None:
    tokenizer = json.loads((source_folder() / "tokenizer.json").read_text())
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert isinstance(tokens, list) and len(tokens) == 30522
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    assert special == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    for text, token_id in tokenizer["model"]["vocab"].items():
        if text in special:
            assert tokens[token_id] == text
        elif text.startswith("##"):
            assert tokens[token_id] == text[2:]
        else:
            assert tokens[token_id] == "\u2581" + text
    assert _field(reader, "tokenizer.ggml.cls_token_id") == 101
    assert _field(reader, "tokenizer.ggml.seperator_token_id") == 102
    assert _field(reader, "tokenizer.ggml.unknown_token_id") == 100


def test_every_weight_matches_the_safetensors_file(reader: gguf.GGUFReader) -> None:
    weights = open_safetensors(source_folder() / "model.safetensors")
    converted = {t.name: t for t in reader.tensors}
    assert converted["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32  # the catalog's
    assert converted["token_embd_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert converted["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    pairs = {
        "token_embd.weight": "embeddings.word_embeddings.weight",
        "position_embd.weight": "embeddings.position_embeddings.weight",
        "blk.0.attn_q.weight": "encoder.layer.0.attention.self.query.weight",
        "blk.3.ffn_up.weight": "encoder.layer.3.intermediate.dense.weight",
        "blk.5.ffn_down.bias": "encoder.layer.5.output.dense.bias",
        "blk.5.layer_output_norm.weight": "encoder.layer.5.output.LayerNorm.weight",
    }
    for gguf_name, source_name in pairs.items():
        expected = weights.load(source_name)
        actual = np.asarray(converted[gguf_name].data, dtype=np.float32).reshape(expected.shape)
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4)
    assert len(converted) == 5 + 16 * 6  # no pooler, no position ids


def _copy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "folder"
    shutil.copytree(source_folder(), folder)
    return folder


def test_a_folder_without_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = _copy_folder(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json is missing"):
        convert_bert_folder(folder, tmp_path / "out.gguf", name="x")
    assert not (tmp_path / "out.gguf").exists()


def _rewrite_shape(path: Path, tensor: str, shape: list[int]) -> None:
    """Edits the safetensors header so `tensor` claims another shape of the same size."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    header[tensor]["shape"] = shape
    encoded = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    assert len(encoded) == length
    path.write_bytes(data[:8] + encoded + data[8 + length :])


def test_a_tensor_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    folder = _copy_folder(tmp_path)
    _rewrite_shape(folder / "model.safetensors", "encoder.layer.2.intermediate.dense.weight", [384, 1536])
    with pytest.raises(ModelLoadError, match=r"intermediate\.dense\.weight has shape \[384, 1536\]"):
        convert_bert_folder(folder, tmp_path / "out.gguf", name="x")


def test_a_truncated_weights_file_is_refused(tmp_path: Path) -> None:
    folder = _copy_folder(tmp_path)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        convert_bert_folder(folder, tmp_path / "out.gguf", name="x")


def test_a_failed_conversion_leaves_nothing_in_the_models_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package whose zip holds a folder without tokenizer.json.
    package = tmp_path / "site" / "broken_embedding_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with zipfile.ZipFile(package / "model.zip", "w") as zf:
        for name in ("config.json", "model.safetensors", "modules.json", "1_Pooling/config.json"):
            zf.write(source_folder() / name, f"inner/{name}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("broken_embedding_pkg", None)
    entry = CatalogEntry(
        id="broken-embed", name="Broken", description="", engine="llama.cpp", format="gguf",
        parameters="", quantization="F16", context_length=512, license="", size_bytes=0, embedding=True,
        source=ConvertedSource("broken_embedding_pkg", "model.zip", "broken.gguf", "broken==1"),
    )  # fmt: skip
    models_dir = tmp_path / "models"
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json is missing"):
        convert_packaged(entry, models_dir)
    assert not (models_dir / "broken.gguf").exists()
    assert list((models_dir / ".partial").iterdir()) == []


def test_f16_keeps_vectors_norms_and_positions_in_f32(tmp_path: Path) -> None:
    out = tmp_path / "half.gguf"
    convert_bert_folder(source_folder(), out, name="half", precision="f16")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert types["token_embd.weight"] == types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.F16
    f32 = gguf.GGMLQuantizationType.F32
    assert types["position_embd.weight"] == types["token_types.weight"] == f32
    assert types["blk.0.attn_q.bias"] == types["blk.0.attn_output_norm.weight"] == f32
    assert out.stat().st_size < converted_gguf().stat().st_size * 0.6
