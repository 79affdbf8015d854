"""Server settings: one declaration feeds environment variables (prefix LOCALLAB_), CLI flags and docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from locallab.config.remote import load_remote_models


def _default_models_dir() -> Path:
    # XDG data directory, as other local model tools use it.
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "locallab" / "models"


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every field is also an environment variable: `LOCALLAB_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="LOCALLAB_", extra="ignore")

    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    host: str = Field("127.0.0.1", description="Address to bind. Loopback only unless you change it.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    model: str = Field(
        "smollm2-135m-instruct",
        description="Model loaded at start: a catalog id, a remote model id, a path to a .gguf file or to "
        "a transformers model folder. Empty: start with none.",
    )
    models_dir: Path = Field(
        default_factory=_default_models_dir,
        description="Directory for downloaded models (default: $XDG_DATA_HOME/locallab/models).",
    )
    data_dir: Path | None = Field(
        None,
        description="Directory for LocalLab's own data (the stored responses database, responses.db); "
        "default: the directory that holds models_dir ($XDG_DATA_HOME/locallab).",
    )
    response_retention_days: float = Field(
        30.0,
        ge=0,
        description="Days a stored response (POST /v1/responses with store) is kept; 0 keeps them forever.",
    )
    catalog_file: Path | None = Field(
        None,
        description="A TOML file of extra catalog entries (same format as the built-in catalog); its ids "
        "override built-in ones.",
    )
    model_dirs: str = Field(
        "",
        description="Extra directories (comma-separated) that requests may load model files from; the models "
        "directory always is one. The model given at start may be anywhere.",
    )
    memory_limit_mb: int = Field(
        0,
        ge=0,
        description="Most memory loaded models may take together, in MB (0: what the machine has free). "
        "A load "
        "that would not fit gets 507 with the estimate.",
    )
    rate_limit_per_minute: int = Field(
        60, ge=0, description="Requests per minute per client (token bucket refill); 0 turns the limiter off."
    )
    rate_limit_burst: int = Field(10, ge=1, description="Requests a client may send at once before waiting.")
    threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="CPU threads for inference (default: all cores). An embedding model reads passes on up "
        "to 4 contexts side by side, one thread each.",
    )
    context_length: int = Field(
        4096,
        ge=256,
        description="Context window per sequence in tokens (capped at what the model was trained for).",
    )
    parallel: int = Field(
        8, ge=1, le=64, description="Most sequences decoded together in one batch (they share the KV pool)."
    )
    kv_tokens: int = Field(
        0,
        ge=0,
        description="llama.cpp engine: size of the one KV cache pool all sequences share, in tokens. 0: "
        "automatic (what fits in 192 MB or a quarter of free memory, at least one full context, at most "
        "parallel full contexts).",
    )
    kv_type: Literal["f16", "q8_0", "q4_0"] = Field(
        "f16",
        description="llama.cpp engine: how keys and values are stored; q8_0 takes about half the memory of "
        "f16 and q4_0 about a quarter (quantized types turn flash attention on).",
    )
    prefix_cache: bool = Field(
        True,
        description="llama.cpp engine: reuse the KV cache of prompt prefixes that earlier or running "
        "requests computed (finished requests' cells stay until the pool needs them).",
    )
    deterministic: bool = Field(
        True,
        description="llama.cpp engine: a request on an idle server starts from an empty KV pool, so a greedy "
        "or seeded request repeats exactly; prefixes are then shared only between requests that overlap in "
        "time. false: keep cached prefixes across idle moments too (follow-up turns start faster; a repeat "
        "may then part from the first answer where two tokens were nearly tied).",
    )
    max_queue: int = Field(
        64, ge=0, description="Requests that may wait for a free slot; past it requests get 503."
    )
    max_loaded_models: int = Field(
        2, ge=1, le=16, description="Models kept loaded at once; the least recently used idle one makes room."
    )
    ollama_version: str = Field(
        "0.6.4",
        pattern=r"^\d+\.\d+\.\d+$",
        description="The version GET /api/version reports to Ollama clients: the Ollama API level LocalLab "
        "implements (clients such as VS Code Copilot refuse versions below 0.6.4).",
    )
    keep_alive: float = Field(
        300.0, gt=0, description="Seconds an unused model (other than the default) stays loaded."
    )
    batch_size: int = Field(
        128,
        ge=16,
        le=4096,
        description="Most prompt tokens processed in one decode step (chunked prefill): smaller keeps "
        "running streams smooth while prompts are read, larger reads long prompts faster.",
    )
    embedding_batch_size: int = Field(
        512,
        ge=64,
        le=16384,
        description="Most tokens an embedding model reads in one pass: the inputs of one request and of "
        "concurrent requests share it (never less than the model's context).",
    )
    embedding_sequences: int = Field(
        16,
        ge=1,
        le=256,
        description="Most inputs an embedding model reads in one pass (a pass's attention grows with the "
        "square of its tokens: small passes are faster).",
    )
    max_embedding_inputs: int = Field(
        2048, ge=1, le=65536, description="Most inputs one embedding request may send."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Transformers engine: where models run; auto picks CUDA (bf16) when torch sees a GPU, "
        "else the CPU (float32).",
    )
    quantize: Literal["none", "8bit", "4bit"] = Field(
        "none",
        description="Transformers engine: load weights in 8 or 4 bits (needs CUDA and bitsandbytes).",
    )
    default_max_length: int = Field(512, ge=1, description="New tokens generated when a request sets none.")
    log_level: str = Field("info", description="Log level: debug, info, warning or error.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text or as JSON objects (one per line); both carry the request id."
    )
    api_keys: str = Field(
        "", description="Comma-separated API keys; when set, every route but /health needs one."
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key per line (re-read when it changes)."
    )
    allow_no_auth: bool = Field(
        False, description="Allow binding a non-loopback address without API keys (not recommended)."
    )
    allowed_hosts: str = Field(
        "",
        description="Extra Host header values accepted, comma-separated (loopback names always are; "
        "'*' accepts any).",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API from a browser (default: none)."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 beyond).")
    max_messages: int = Field(512, ge=1, description="Most messages in one chat request.")
    max_length_cap: int = Field(
        8192, ge=1, description="Most new tokens any request may ask for; larger max_length is capped."
    )
    max_time_cap: float = Field(
        600.0, gt=0, description="Longest any generation may run, in seconds (ends with finish_reason time)."
    )
    ssl_certfile: Path | None = Field(
        None,
        description="PEM certificate (chain) to serve HTTPS with; needs ssl_keyfile too. Unset: plain HTTP.",
    )
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of ssl_certfile (unencrypted; keep it readable by LocalLab only)."
    )
    shutdown_grace: float = Field(
        10.0, ge=0, description="On SIGTERM, seconds running generations get to finish before they are ended."
    )

    remote_models: Path | None = Field(
        None,
        description="TOML file that maps model ids to upstream OpenAI-compatible servers (vLLM, llama.cpp, "
        "another LocalLab): the remote engine. See docs/features/remote-engine.md.",
    )

    @field_validator("remote_models")
    @classmethod
    def _remote_models_file_is_usable(cls, path: Path | None) -> Path | None:
        load_remote_models(path)  # a bad file stops the server at start, with the reason
        return path

    def data_path(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.models_dir.parent

    def key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def model_dir_list(self) -> list[Path]:
        return [Path(d.strip()) for d in self.model_dirs.split(",") if d.strip()]

    def host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]

    def origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
