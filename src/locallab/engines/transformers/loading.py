"""Loading a Hugging Face model folder (config.json, tokenizer, safetensors weights) for the engine."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from locallab.engines.base import ModelInfo
from locallab.engines.transformers.batch import KVBatch, joinable
from locallab.engines.transformers.engine import HFModel, TransformersEngine
from locallab.engines.transformers.placement import (
    Device,
    MachineFacts,
    Placement,
    Quantize,
    plan_placement,
)
from locallab.errors import ModelLoadError

logger = logging.getLogger(__name__)

_BYTES_PER_PARAM = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}


def machine_facts() -> MachineFacts:
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    free = tuple(torch.cuda.mem_get_info(i)[0] for i in range(cuda))
    return MachineFacts(
        cuda_devices=cuda,
        gpu_free_bytes=free,
        bf16_supported=bool(cuda and torch.cuda.is_bf16_supported()),
        has_bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        has_accelerate=importlib.util.find_spec("accelerate") is not None,
    )


def _weights(folder: Path) -> list[Path]:
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = (
            f" It has {', '.join(pickled)}: pickle files can run code when loaded, so LocalLab only loads "
            "safetensors."
            if pickled
            else ""
        )
        raise ModelLoadError(f"The model folder {folder} has no .safetensors weights.{hint}")
    return weights


def _chat_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one is for chat
        template = template.get("default")
    return template if isinstance(template, str) and template.strip() else None


def _eos_ids(tokenizer: Any, folder: Path) -> frozenset[int]:
    """End-of-turn tokens: the generation config's (often several) and the tokenizer's own."""
    ids: set[int] = set()
    try:
        eos = GenerationConfig.from_pretrained(folder, local_files_only=True).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list):
        ids.update(int(i) for i in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos is not None and len(with_special) > 0 and with_special[0] == bos


def load_hf_model(
    folder: Path, *, context_length: int, threads: int, device: Device = "auto", quantize: Quantize = "none"
) -> HFModel:
    """Blocking: call from a worker thread. Remote code in the folder is never run."""
    weights = _weights(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Cannot read the model folder {folder}: {exc}") from exc
    text_config = config.get_text_config(decoder=True)
    file_dtype = str(getattr(text_config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
    size = sum(p.stat().st_size for p in weights)
    per_param = _BYTES_PER_PARAM.get(file_dtype.replace("torch.", ""), 4)
    placement = plan_placement(machine_facts(), size * 2 // per_param, device=device, quantize=quantize)
    if placement.device == "cpu":
        torch.set_num_threads(threads)
    model = _load_weights(folder, placement)
    trained = int(getattr(text_config, "max_position_embeddings", 0) or context_length)
    info = ModelInfo(
        path=folder,
        architecture=str(config.model_type),
        name=folder.name,
        context_length=trained,
        parameters=int(model.num_parameters()),
        quantization=placement.label,
        size_bytes=size,
        chat_template=_chat_template(tokenizer),
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
        add_bos=_adds_bos(tokenizer),
        metadata={
            "transformers.version": transformers.__version__,
            "device": placement.device if placement.device_map is None else "auto",
            "dtype": placement.dtype,
        },
    )
    hf = HFModel(
        model,
        tokenizer,
        info,
        device=torch.device(placement.device),
        eos_ids=_eos_ids(tokenizer, folder),
        context_length=min(context_length, trained),
        stackable=True,
    )
    hf.stackable = _stackable(hf)
    return hf


def _load_weights(folder: Path, placement: Placement) -> Any:
    options: dict[str, Any] = {
        "dtype": getattr(torch, placement.dtype),
        "trust_remote_code": False,
        "local_files_only": True,
        "use_safetensors": True,
    }
    if placement.device_map is not None:
        options["device_map"] = placement.device_map
    if placement.quantize != "none":
        from transformers import BitsAndBytesConfig

        bits = {"load_in_8bit": True} if placement.quantize == "8bit" else {"load_in_4bit": True}
        options["quantization_config"] = BitsAndBytesConfig(**bits)  # type: ignore[no-untyped-call]
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **options)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(f"Cannot load the model in {folder}: {exc}") from exc
    if placement.device_map is None:
        model = model.to(placement.device)
    model.eval()
    return model


def _stackable(hf: HFModel) -> bool:
    """Reads one token to learn whether this model's cache is plain keys and values (then sequences
    can share a batch); it also warms the model up."""
    token = hf.tokenizer.bos_token_id if hf.tokenizer.bos_token_id is not None else 0
    _, cache = KVBatch(hf.model, hf.device).prefill([int(token)])
    stackable = joinable(cache)
    if not stackable:
        logger.warning("%s: its cache cannot be batched; requests run one at a time", hf.info.name)
    return stackable


def load_transformers_engine(
    folder: Path,
    *,
    context_length: int,
    parallel: int,
    threads: int,
    max_queue: int = 64,
    device: Device = "auto",
    quantize: Quantize = "none",
) -> TransformersEngine:
    """Blocking: call from a worker thread."""
    hf = load_hf_model(
        folder, context_length=context_length, threads=threads, device=device, quantize=quantize
    )
    return TransformersEngine(hf, parallel=parallel, max_queue=max_queue)
