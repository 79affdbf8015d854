"""Where a transformers model runs: device, dtype, device_map and 8/4-bit loading, from the facts of
this machine. Pure functions (no torch import), so the CUDA choices are tested on machines without one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from locallab.errors import ModelLoadError

Device = Literal["auto", "cpu", "cuda"]
Quantize = Literal["none", "8bit", "4bit"]

# Room left on a GPU for activations and the KV cache when deciding whether weights fit on one.
_GPU_HEADROOM = 0.8


@dataclass(frozen=True)
class MachineFacts:
    cuda_devices: int
    gpu_free_bytes: tuple[int, ...]  # free memory per CUDA device
    bf16_supported: bool
    has_bitsandbytes: bool
    has_accelerate: bool


@dataclass(frozen=True)
class Placement:
    device: str  # where inputs go: "cpu" or "cuda:0" (with device_map "auto": the first layers' device)
    dtype: Literal["float32", "bfloat16", "float16"]
    device_map: str | None  # "auto": accelerate spreads the layers over every GPU (and CPU if need be)
    quantize: Quantize

    @property
    def label(self) -> str:
        """What /models/current shows as the model's quantization."""
        if self.quantize != "none":
            return {"8bit": "INT8", "4bit": "NF4"}[self.quantize]
        return {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[self.dtype]


def plan_placement(
    facts: MachineFacts, weights_bytes: int, *, device: Device, quantize: Quantize
) -> Placement:
    """CUDA with bf16 (fp16 where bf16 is missing) when a GPU exists, CPU with float32 otherwise.
    `weights_bytes` is the weights' size in 16 bits.

    Weights larger than one GPU's free memory are spread with `device_map="auto"`. 8- and 4-bit loading
    need CUDA and bitsandbytes: elsewhere the load fails with a message saying what is missing.
    """
    use_cuda = facts.cuda_devices > 0 if device == "auto" else device == "cuda"
    if device == "cuda" and facts.cuda_devices == 0:
        raise ModelLoadError("LOCALLAB_DEVICE is 'cuda' but torch sees no CUDA device on this machine.")
    if quantize != "none":
        missing = [
            what
            for what, present in (
                ("a CUDA GPU", use_cuda),
                ("the bitsandbytes package", facts.has_bitsandbytes),
            )
            if not present
        ]
        if missing:
            raise ModelLoadError(
                f"{quantize} loading needs {' and '.join(missing)}; set LOCALLAB_QUANTIZE=none to load "
                "the model unquantized."
            )
    if not use_cuda:
        return Placement("cpu", "float32", None, "none")
    dtype: Literal["bfloat16", "float16"] = "bfloat16" if facts.bf16_supported else "float16"
    needed = weights_bytes * {"none": 1.0, "8bit": 0.5, "4bit": 0.25}[quantize]
    first_gpu = facts.gpu_free_bytes[0] if facts.gpu_free_bytes else 0
    too_big = needed > first_gpu * _GPU_HEADROOM
    if quantize != "none" or (too_big and (facts.cuda_devices > 1 or facts.has_accelerate)):
        if not facts.has_accelerate:
            raise ModelLoadError("Spreading a model over devices needs accelerate: pip install accelerate.")
        return Placement("cuda:0", dtype, "auto", quantize)
    return Placement("cuda:0", dtype, None, "none")
