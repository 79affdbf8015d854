"""Ollama's wire format <-> LocalLab's core: what each Ollama field and option becomes.

- Model names: Ollama's `name[:tag]` -> our id: lowercased, `:latest` dropped (`x` = `x:latest`).
  `hf.co/owner/repo:quant` -> the file `owner--repo--quant.gguf` that /api/pull writes for it.
  Answers echo the name the client sent; lists show `id:latest`.
- options.num_predict -> max_tokens (-1 or -2, "until the context is full": the server's cap);
  temperature, top_p, top_k, min_p, seed, stop, presence_penalty, frequency_penalty -> the same sampling
  fields; repeat_penalty -> repetition_penalty; repeat_last_n -> penalty_last_n (0: no penalties,
  -1: the whole sequence); temperature 0 -> greedy. Absent ones take Ollama's
  defaults (temperature 0.8, top_p 0.9, top_k 40), so a client sees what it would see from Ollama.
- options.seed: negative -> random (no seed); above 2**32 - 2 -> taken modulo 2**32 - 1.
- options.num_ctx: at most the context the model was loaded with (else 400); it bounds prompt + answer.
- format "json" -> JSON grammar; a schema -> the same grammar path as OpenAI's response_format.
- keep_alive: seconds or a Go duration ("5m", "1h30m"); negative = forever; 0 = unload after this.
- Durations: integer nanoseconds; created_at: RFC 3339 in timezone.utc.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from locallab.api.ollama.schemas import Format, KeepAlive, Options
from locallab.engines.base import FinishReason, SamplingParams
from locallab.errors import InvalidRequestError

DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}
APPLIED_OPTIONS = (
    "num_predict", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty",
    "repeat_last_n", "presence_penalty", "frequency_penalty", "num_ctx",
)  # fmt: skip
# Accepted so that clients which always send them work; LocalLab's engine has no such setting.
IGNORED_OPTIONS = (
    "num_keep", "typical_p", "tfs_z", "mirostat", "mirostat_tau",
    "mirostat_eta", "penalize_newline", "numa", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv",
    "logits_all", "vocab_only", "use_mmap", "use_mlock", "embedding_only", "num_thread",
)  # fmt: skip
FOREVER = math.inf
LATEST = ":latest"


HUB_NAME = re.compile(r"^(?:hf\.co|huggingface\.co)/([\w.-]+)/([\w.-]+)(?::([\w.-]+))?$")
_HUB_FILE = re.compile(r"^([\w.-]+?)--([\w.-]+?)--([\w.-]+)\.gguf$")


def hub_name(name: str) -> tuple[str, str | None] | None:
    """("owner/repo", quantization or None) for Ollama's `hf.co/owner/repo[:quant]` names."""
    match = HUB_NAME.match(name.strip())
    if match is None:
        return None
    tag = match.group(3)
    return f"{match.group(1)}/{match.group(2)}", None if tag in (None, "latest") else tag


def hub_file(name: str) -> str:
    """The models directory's file for an `hf.co/owner/repo[:quant]` name (what /api/pull writes)."""
    found = hub_name(name)
    assert found is not None
    repo, quant = found
    return f"{repo.replace('/', '--')}--{quant or 'latest'}.gguf"


def model_id(name: str) -> str:
    """Our id for an Ollama model name. `hf.co/owner/repo:quant` -> the file /api/pull wrote for it;
    other paths (a '/' or a .gguf file) pass through unchanged."""
    name = name.strip()
    if hub_name(name) is not None:
        return hub_file(name)
    if "/" in name or "\\" in name or name.lower().endswith(".gguf"):
        return name
    name = name.lower()
    return name[: -len(LATEST)] if name.endswith(LATEST) else name


def ollama_name(model_id: str) -> str:
    hub = _HUB_FILE.match(model_id)
    if hub is not None:
        return f"hf.co/{hub.group(1)}/{hub.group(2)}:{hub.group(3)}"
    return model_id if ":" in model_id or "/" in model_id else model_id + LATEST


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: KeepAlive) -> float | None:
    """None: unchanged; FOREVER for a negative value; else seconds (0: unload after the request)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)  # a bare number is seconds
        except ValueError:
            parts = _DURATION_PART.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise InvalidRequestError(
                    f"keep_alive: '{value[:40]}' is not a duration; send seconds (300) or a Go duration "
                    'such as "5m", "1h30m" or "-1" (keep loaded).'
                ) from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return FOREVER if seconds < 0 else seconds


def output_constraint(fmt: Format) -> dict[str, Any]:
    if fmt is None or fmt == "":
        return {}
    if fmt == "json":
        return {"json_output": True}
    if isinstance(fmt, dict):
        return {"json_output": True, "json_schema": fmt}
    raise InvalidRequestError('format: send "json" or a JSON schema object.')


def sampling(options: Options | None, fmt: Format) -> SamplingParams:
    o = options or Options()
    temperature = DEFAULTS["temperature"] if o.temperature is None else o.temperature
    stops = (o.stop,) if isinstance(o.stop, str) else tuple(o.stop or ())
    if any(not s for s in stops):
        raise InvalidRequestError("options.stop: stop sequences must not be empty.")
    seed = o.seed
    if seed is not None and seed < 0:
        seed = None  # Ollama's -1: a random seed
    elif seed is not None and seed > 2**32 - 2:
        seed %= 2**32 - 1  # Ollama takes any int; llama.cpp's sampler seeds are 32-bit
    return SamplingParams(
        max_tokens=1,  # the generation service sets the real limit (max_tokens below)
        temperature=temperature,
        top_p=DEFAULTS["top_p"] if o.top_p is None else o.top_p,
        top_k=int(DEFAULTS["top_k"]) if o.top_k is None else o.top_k,
        repetition_penalty=1.0 if o.repeat_penalty is None else o.repeat_penalty,
        do_sample=temperature > 0,
        seed=seed,
        stop=stops,
        presence_penalty=o.presence_penalty or 0.0,
        frequency_penalty=o.frequency_penalty or 0.0,
        min_p=o.min_p or 0.0,
        penalty_last_n=64 if o.repeat_last_n is None else o.repeat_last_n,
        **output_constraint(fmt),
    )


def max_tokens(options: Options | None, cap: int) -> int | None:
    """num_predict -> the answer's token limit (None: the server's default)."""
    n = options.num_predict if options else None
    if n is None:
        return None
    if n in (-1, -2):
        return cap
    if n < 1:
        raise InvalidRequestError(
            f"options.num_predict: {n} generates nothing; send a positive number, or -1 for no limit."
        )
    return n


def check_num_ctx(options: Options | None, loaded_context: int) -> int | None:
    n = options.num_ctx if options else None
    if n is not None and n > loaded_context:
        raise InvalidRequestError(
            f"options.num_ctx: {n} is more than the {loaded_context} tokens this model was loaded with; "
            "send at most that, or start the server with a larger LOCALLAB_CONTEXT_LENGTH."
        )
    return n


def done_reason(finish: FinishReason | None) -> str:
    return "length" if finish in ("length", "time") else "stop"


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Timings:
    """Wall-clock marks of one request, reported as Ollama's integer-nanosecond durations."""

    started: int = field(default_factory=time.perf_counter_ns)
    loaded: int = 0
    first_token: int = 0

    def mark_loaded(self) -> None:
        self.loaded = time.perf_counter_ns()

    def mark_token(self) -> None:
        if not self.first_token:
            self.first_token = time.perf_counter_ns()

    def final(self, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        end = time.perf_counter_ns()
        loaded = self.loaded or self.started
        first = self.first_token or end
        return {
            "total_duration": end - self.started,
            "load_duration": loaded - self.started,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": first - loaded,
            "eval_count": completion_tokens,
            "eval_duration": end - first,
        }
