"""Models for transformers-engine tests: a tiny random Llama built here (no network), and SmolLM2
converted from the shipped GGUF by transformers' GGUF loader (once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locallab.engines.fake import CHATML_TEMPLATE

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! Count from one to ten: 1 2 3 4 5 6 7 8 9 10.",
    "Paris is the capital of France. Name three colours: red, green, blue.",
    "ありがとう 日本語 café naïve",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_llama(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer trained on a few lines."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, bos_token_id=tokenizer.bos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted from the shipped Q4_1 GGUF (~25 s, once
    per session however many fixtures ask)."""
    from locallab.engines.transformers.convert import convert_gguf
    from tests.real_model import default_model_path

    folder = tmp_path_factory.getbasetemp() / "smollm2-transformers"
    done = folder / ".converted"
    if not done.exists():
        convert_gguf(default_model_path(), folder)
        done.touch()
    return folder
