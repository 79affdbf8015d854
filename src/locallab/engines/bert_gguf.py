"""A sentence-transformers BERT folder (config.json, model.safetensors, tokenizer.json, a pooling module)
written as a GGUF file that llama.cpp serves embeddings from (architecture `bert`).

What llama.cpp expects, from the GGUF specification and llama.cpp's BERT loader:
- weights under its tensor names (`token_embd`, `blk.N.attn_q`, ...); matrices in f16 or f32, while
  1-D tensors, norms, position and token-type embeddings stay f32;
- hyperparameters under `bert.*`, with `bert.attention.causal = false` and `bert.pooling_type` (mean,
  cls) from the folder's pooling module;
- a WordPiece vocabulary (`tokenizer.ggml.model = "bert"`) written in "phantom space" form: a token
  that starts a word gets a leading U+2581, a continuation (`##ing`) loses its `##`, special tokens stay
  as they are; [CLS] is the start token and [SEP] the separator added after every text.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from locallab.engines.safetensors_file import SafetensorsFile, open_safetensors
from locallab.errors import ModelLoadError

Precision = Literal["f16", "f32"]
POOLING_MEAN, POOLING_CLS = 1, 2  # llama.cpp's enum llama_pooling_type
_TOKEN_NORMAL, _TOKEN_UNKNOWN, _TOKEN_CONTROL, _TOKEN_UNUSED = 1, 2, 3, 5  # GGUF token types
_PHANTOM_SPACE = "\u2581"
# HF name (after an optional "bert." prefix) -> GGUF name; {i} is the layer.
_GLOBAL_TENSORS = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_LAYER_NAME = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
# Parts a sentence-transformers model does not use for its embeddings.
_UNUSED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")
_KEPT_F32 = ("position_embd.weight", "token_types.weight")


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    positions: int
    token_types: int
    norm_eps: float


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    source_name: str
    shape: tuple[int, ...]  # numpy order, as in the safetensors file
    precision: Precision

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * (2 if self.precision == "f16" else 4)


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise ModelLoadError(f"{folder.name} is not a sentence-transformers BERT folder: {name} is missing.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{folder.name}/{name} is not readable JSON: {exc}.") from exc


def read_config(folder: Path) -> BertConfig:
    raw = _read_json(folder, "config.json")
    if not isinstance(raw, dict) or raw.get("model_type") != "bert":
        kind = raw.get("model_type") if isinstance(raw, dict) else None
        raise ModelLoadError(f"{folder.name}/config.json describes a {kind!r} model; LocalLab converts BERT.")
    try:
        config = BertConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden=int(raw["hidden_size"]),
            layers=int(raw["num_hidden_layers"]),
            heads=int(raw["num_attention_heads"]),
            ffn=int(raw["intermediate_size"]),
            positions=int(raw["max_position_embeddings"]),
            token_types=int(raw.get("type_vocab_size", 2)),
            norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder.name}/config.json lacks a BERT setting: {exc}.") from exc
    if min(config.vocab_size, config.hidden, config.layers, config.heads, config.ffn, config.positions) <= 0:
        raise ModelLoadError(f"{folder.name}/config.json has a size that is not positive.")
    if config.hidden % config.heads:
        raise ModelLoadError(f"{folder.name}/config.json: hidden_size is not a multiple of the head count.")
    if (
        raw.get("hidden_act", "gelu") != "gelu"
        or raw.get("position_embedding_type", "absolute") != "absolute"
    ):
        raise ModelLoadError(
            f"{folder.name}: only BERT with gelu and absolute positions converts (this one has "
            f"{raw.get('hidden_act')}, {raw.get('position_embedding_type')})."
        )
    return config


def read_pooling(folder: Path) -> int:
    """llama.cpp's pooling type from the sentence-transformers Pooling module (mean when there is none)."""
    modules = _read_json(folder, "modules.json") if (folder / "modules.json").is_file() else []
    pooling_dir = next(
        (
            m.get("path", "")
            for m in modules
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")
        ),
        None,
    )
    if pooling_dir is None:
        return POOLING_MEAN
    pooling = _read_json(folder, f"{pooling_dir}/config.json")
    if pooling.get("pooling_mode_mean_tokens") or pooling.get("pooling_mode") == "mean":
        return POOLING_MEAN
    if pooling.get("pooling_mode_cls_token") or pooling.get("pooling_mode") == "cls":
        return POOLING_CLS
    raise ModelLoadError(
        f"{folder.name}: its pooling ({pooling}) is neither mean nor CLS, which llama.cpp has."
    )


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    types: list[int]
    cls_id: int
    sep_id: int
    unk_id: int
    pad_id: int | None
    mask_id: int | None
    lowercase: bool
    strip_accents: bool


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    tokenizer = _read_json(folder, "tokenizer.json")
    model = tokenizer.get("model") if isinstance(tokenizer, dict) else None
    if (
        not isinstance(model, dict)
        or model.get("type") != "WordPiece"
        or not isinstance(model.get("vocab"), dict)
    ):
        raise ModelLoadError(f"{folder.name}/tokenizer.json is not a WordPiece tokenizer.")
    by_id: dict[int, str] = {}
    for text, token_id in model["vocab"].items():
        if not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise ModelLoadError(
                f"{folder.name}/tokenizer.json: token {text!r} has id {token_id}, outside the model's "
                f"{vocab_size} embeddings."
            )
        by_id[token_id] = text
    special = {t["id"]: t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    by_text = {text: i for i, text in by_id.items()}

    def special_id(name: str) -> int | None:
        return by_text.get(name)

    template = (tokenizer.get("post_processor") or {}).get("single") or []
    specials = [p["SpecialToken"]["id"] for p in template if isinstance(p, dict) and "SpecialToken" in p]
    cls_id = special_id(specials[0] if specials else "[CLS]")
    sep_id = special_id(specials[-1] if specials else "[SEP]")
    unk_id = special_id(str(model.get("unk_token", "[UNK]")))
    if cls_id is None or sep_id is None or unk_id is None:
        raise ModelLoadError(f"{folder.name}/tokenizer.json lacks the [CLS], [SEP] or [UNK] token.")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(_TOKEN_UNUSED)
        elif i in special or i == unk_id:
            tokens.append(text)
            types.append(_TOKEN_CONTROL)
        else:
            tokens.append(text[2:] if text.startswith("##") else _PHANTOM_SPACE + text)
            types.append(_TOKEN_NORMAL)
    normalizer = tokenizer.get("normalizer") or {}
    lowercase = (
        bool(normalizer.get("lowercase", False)) if normalizer.get("type") == "BertNormalizer" else False
    )
    strip = normalizer.get("strip_accents")
    return Vocabulary(
        tokens=tokens,
        types=types,
        cls_id=cls_id,
        sep_id=sep_id,
        unk_id=unk_id,
        pad_id=special_id("[PAD]"),
        mask_id=special_id("[MASK]"),
        lowercase=lowercase,
        strip_accents=lowercase if strip is None else bool(strip),  # BERT's rule: strip when lowercasing
    )


def plan_tensors(weights: SafetensorsFile, config: BertConfig, precision: Precision) -> list[PlannedTensor]:
    """Every GGUF tensor with its source; raises for a missing, unknown or misshapen one."""
    c = config
    expected: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (c.vocab_size, c.hidden),
        "position_embd.weight": (c.positions, c.hidden),
        "token_types.weight": (c.token_types, c.hidden),
        "token_embd_norm.weight": (c.hidden,),
        "token_embd_norm.bias": (c.hidden,),
    }
    square, vector = (c.hidden, c.hidden), (c.hidden,)
    layer_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {  # part -> (weight, bias)
        "attn_q": (square, vector),
        "attn_k": (square, vector),
        "attn_v": (square, vector),
        "attn_output": (square, vector),
        "attn_output_norm": (vector, vector),
        "ffn_up": ((c.ffn, c.hidden), (c.ffn,)),
        "ffn_down": ((c.hidden, c.ffn), vector),
        "layer_output_norm": (vector, vector),
    }
    for i in range(c.layers):
        for part, (weight_shape, bias_shape) in layer_shapes.items():
            expected[f"blk.{i}.{part}.weight"] = weight_shape
            expected[f"blk.{i}.{part}.bias"] = bias_shape
    found: dict[str, str] = {}
    unknown: list[str] = []
    for source in weights.tensors:
        name = source.removeprefix("bert.")
        if _UNUSED.match(name):
            continue
        target = _GLOBAL_TENSORS.get(name)
        if target is None and (m := _LAYER_NAME.match(name)) and m.group(2) in _LAYER_TENSORS:
            target = f"blk.{m.group(1)}.{_LAYER_TENSORS[m.group(2)]}.{m.group(3)}"
        if target is None or target not in expected:
            unknown.append(source)
            continue
        found[target] = source
    if unknown:
        raise ModelLoadError(
            f"{weights.path.name} holds tensors a plain BERT model does not have: {', '.join(unknown[:5])}."
        )
    missing = [name for name in expected if name not in found]
    if missing:
        raise ModelLoadError(f"{weights.path.name} lacks the tensors {', '.join(missing[:5])}.")
    planned = []
    for target, shape in expected.items():
        actual = weights.shape(found[target])
        if actual != shape:
            raise ModelLoadError(
                f"{weights.path.name}: tensor {found[target]} has shape {list(actual)}; config.json makes "
                f"it {list(shape)}."
            )
        keep_f32 = len(shape) == 1 or target in _KEPT_F32 or precision == "f32"
        planned.append(PlannedTensor(target, found[target], shape, "f32" if keep_f32 else "f16"))
    return planned


def _write_metadata(writer: Any, name: str, config: BertConfig, pooling: int, vocab: Vocabulary,
                    precision: Precision) -> None:  # fmt: skip
    arch = "bert"
    writer.add_name(name)
    writer.add_file_type(1 if precision == "f16" else 0)  # MOSTLY_F16 / ALL_F32
    writer.add_uint32(f"{arch}.context_length", config.positions)
    writer.add_uint32(f"{arch}.embedding_length", config.hidden)
    writer.add_uint32(f"{arch}.feed_forward_length", config.ffn)
    writer.add_uint32(f"{arch}.block_count", config.layers)
    writer.add_uint32(f"{arch}.attention.head_count", config.heads)
    writer.add_float32(f"{arch}.attention.layer_norm_epsilon", config.norm_eps)
    writer.add_bool(f"{arch}.attention.causal", False)
    writer.add_uint32(f"{arch}.pooling_type", pooling)
    writer.add_string("tokenizer.ggml.model", "bert")
    writer.add_array("tokenizer.ggml.tokens", vocab.tokens)
    writer.add_array("tokenizer.ggml.token_type", vocab.types)
    writer.add_uint32("tokenizer.ggml.token_type_count", config.token_types)
    writer.add_uint32("tokenizer.ggml.bos_token_id", vocab.cls_id)
    writer.add_uint32("tokenizer.ggml.cls_token_id", vocab.cls_id)
    writer.add_uint32("tokenizer.ggml.seperator_token_id", vocab.sep_id)  # llama.cpp's spelling
    writer.add_uint32("tokenizer.ggml.unknown_token_id", vocab.unk_id)
    if vocab.pad_id is not None:
        writer.add_uint32("tokenizer.ggml.padding_token_id", vocab.pad_id)
    if vocab.mask_id is not None:
        writer.add_uint32("tokenizer.ggml.mask_token_id", vocab.mask_id)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_bool("tokenizer.ggml.add_eos_token", False)
    writer.add_bool("tokenizer.ggml.add_sep_token", True)
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", vocab.lowercase)
    writer.add_bool("tokenizer.ggml.normalizer.strip_accents", vocab.strip_accents)


class ConversionCancelled(Exception):
    pass


def convert_bert_folder(
    folder: Path,
    output: Path,
    *,
    name: str,
    precision: Precision = "f16",
    report: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Blocking: writes `output` (the caller moves it into place once complete). Everything is checked
    before the first byte is written; raises ModelLoadError naming the problem."""
    import gguf  # imported here: numpy-heavy, and only a conversion needs it

    config = read_config(folder)
    pooling = read_pooling(folder)
    vocab = read_vocabulary(folder, config.vocab_size)
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(
            f"{folder.name} has no model.safetensors (LocalLab never loads pickled weights)."
        )
    weights = open_safetensors(folder / "model.safetensors")
    planned = plan_tensors(weights, config, precision)
    total = sum(t.nbytes for t in planned)
    writer = gguf.GGUFWriter(output, "bert")
    try:
        _write_metadata(writer, name, config, pooling, vocab, precision)
        for tensor in planned:
            dtype = np.float16 if tensor.precision == "f16" else np.float32
            writer.add_tensor_info(tensor.gguf_name, tensor.shape, np.dtype(dtype), tensor.nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        done = 0
        for tensor, data in _converted(weights, planned):
            if cancel is not None and cancel.is_set():
                raise ConversionCancelled
            writer.write_tensor_data(data)
            done += tensor.nbytes
            if report is not None:
                report(done, total)
    finally:
        writer.close()


def _converted(
    weights: SafetensorsFile, planned: list[PlannedTensor]
) -> Iterator[tuple[PlannedTensor, np.ndarray[Any, Any]]]:
    for tensor in planned:
        data = weights.load(tensor.source_name)
        if not np.isfinite(data).all():
            raise ModelLoadError(
                f"{weights.path.name}: tensor {tensor.source_name} holds NaN or infinite values."
            )
        if tensor.precision == "f16":
            if np.abs(data).max(initial=0.0) > 65504:
                raise ModelLoadError(f"{weights.path.name}: tensor {tensor.source_name} overflows float16.")
            yield tensor, np.ascontiguousarray(data.astype(np.float16))
        else:
            yield tensor, np.ascontiguousarray(data)
