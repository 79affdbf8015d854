"""A GGUF file as a transformers model folder (safetensors), through transformers' own GGUF loader.

The weights are dequantized to float32. The converted tokenizer's special tokens are set from the
GGUF metadata (llama.cpp's end-of-generation and start-token rules), so the folder's model stops at
the end of a turn as the GGUF does under llama.cpp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from locallab.errors import ModelLoadError


def _metadata_int(reader: Any, key: str) -> int | None:
    field = reader.fields.get(key)
    return None if field is None else int(field.parts[field.data[0]][0])


def _metadata_bool(reader: Any, key: str) -> bool | None:
    field = reader.fields.get(key)
    return None if field is None else bool(field.parts[field.data[0]][0])


def convert_gguf(path: Path, folder: Path) -> Path:
    """Writes `folder` (config.json, tokenizer files, model.safetensors) from the GGUF at `path`."""
    reader = gguf.GGUFReader(path)
    eos_id = _metadata_int(reader, "tokenizer.ggml.eos_token_id")
    add_bos = _metadata_bool(reader, "tokenizer.ggml.add_bos_token")
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model: Any = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"transformers cannot read {path.name}: {exc}") from exc
    if eos_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
        model.generation_config.eos_token_id = eos_id
    if add_bos is not None and hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = add_bos
    # The weights are plain float32 tensors now; the GGUF quantizer only marks them as loaded from GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
