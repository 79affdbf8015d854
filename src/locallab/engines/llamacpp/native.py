"""Loading a GGUF model through llama.cpp's C API and reading what its metadata says about it."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from locallab.engines.base import ModelInfo
from locallab.engines.gguf import check_gguf_header
from locallab.engines.llamacpp.memory import auto_pool_tokens, check_fits, estimate_memory
from locallab.engines.llamacpp.probe import probe_gguf
from locallab.errors import ModelLoadError

logger = logging.getLogger(__name__)


class _NativeLog:
    """llama.cpp's logger is process-wide: one sink keeps recent lines so a failed load can say why."""

    def __init__(self) -> None:
        self.recent: deque[str] = deque(maxlen=20)
        self._callback = llama_cpp.llama_log_callback(self._on_log)  # referenced: ctypes must not free it
        self._installed = False
        self._lock = threading.Lock()

    def _on_log(self, level: int, text: bytes | None, _user: Any) -> None:
        if not text:
            return
        line = text.decode("utf-8", errors="replace").strip()
        # GGML_LOG_LEVEL_ERROR is 4 (WARN 3): keep both for load diagnostics.
        if line and level in (3, 4):
            self.recent.append(line)
            logger.debug("llama.cpp: %s", line)

    def install(self) -> None:
        with self._lock:
            if not self._installed:
                llama_cpp.llama_backend_init()
                llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
                self._installed = True


native_log = _NativeLog()

KV_GGML_TYPES = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}
MAX_LANES = 256  # llama.cpp's LLAMA_MAX_SEQ
# Finished requests keep their cells on a lane of their own until evicted: lanes per running slot.
CACHED_LANES_PER_SLOT = 4


@dataclass
class NativeModel:
    """Owns the llama.cpp model and context pointers; `free()` releases both."""

    model: Any
    ctx: Any
    vocab: Any
    n_ctx_seq: int
    n_vocab: int
    info: ModelInfo
    pool_tokens: int = 0  # cells of the unified KV cache
    lanes: int = 1  # sequence ids: running requests plus cached prefixes
    share_prefixes: bool = True
    kv_type: str = "f16"
    params: Any = None  # the context's llama_context_params: more contexts on the same weights

    def new_context(self) -> Any:
        """Another context with this one's settings on the same weights (mapped once), or None when
        llama.cpp cannot make one. The caller frees it with llama_free before `free()`."""
        ctx = llama_cpp.llama_init_from_model(self.model, self.params)
        return ctx or None

    def free(self) -> None:
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None


def _meta(model: Any, key: str) -> str | None:
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    return buf.value.decode("utf-8", errors="replace")


def _token_text(vocab: Any, token: int) -> str:
    if token < 0:
        return ""
    text = llama_cpp.llama_vocab_get_text(vocab, token)
    return text.decode("utf-8", errors="replace") if text else ""


def _quantization(model: Any) -> str:
    buf = ctypes.create_string_buffer(256)
    llama_cpp.llama_model_desc(model, buf, len(buf))
    # The description reads "<arch> <size> <file type>", e.g. "llama ?B Q4_1".
    parts = buf.value.decode("utf-8", errors="replace").split(" ", 2)
    return parts[2] if len(parts) == 3 else "unknown"


def load_native_model(
    path: Path,
    *,
    context_length: int,
    parallel: int,
    threads: int,
    batch_size: int,
    probe: bool = False,
    memory_limit_mb: int = 0,
    embeddings: bool = False,
    kv_tokens: int = 0,
    kv_type: str = "f16",
    prefix_cache: bool = True,
) -> NativeModel:
    """Blocking: parses the file, maps its weights and allocates one KV pool of `kv_tokens` cells (0:
    `auto_pool_tokens`) that every sequence shares.

    `embeddings`: a context that pools each sequence into a vector (the model's own pooling), reading
    up to `batch_size` tokens of up to `parallel` sequences in one pass; embedding models keep no cache.

    Before llama.cpp sees the file: its structure is checked in Python, it is opened in a child process
    first when `probe` (files from outside the catalog), and its memory need is checked against what is
    free (507 instead of an out-of-memory kill)."""
    header = check_gguf_header(path)
    if probe:
        probe_gguf(path)
    if embeddings:
        kv_tokens = context_length  # one pass of inputs; an embedding context keeps nothing between passes
    elif kv_tokens <= 0:
        kv_tokens = auto_pool_tokens(
            header, context_length=context_length, parallel=parallel, kv_type=kv_type
        )
    estimate = estimate_memory(path, header, pool_tokens=kv_tokens, kv_type=kv_type)
    check_fits(path.name, estimate, memory_limit_mb)
    native_log.install()
    native_log.recent.clear()
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
    if not model:
        reason = "; ".join(native_log.recent) or "llama.cpp could not parse it"
        raise ModelLoadError(f"Cannot load {path.name} as a GGUF model: {reason}.")
    try:
        n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        n_ctx_seq = min(context_length, n_ctx_train) if n_ctx_train > 0 else context_length
        # Sliding-window layers prune cells a shared prefix would still need: no sharing, no cached lanes.
        share = prefix_cache and not embeddings and int(llama_cpp.llama_model_n_swa(model)) == 0
        lanes = min(MAX_LANES, parallel * CACHED_LANES_PER_SLOT) if share else parallel
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = kv_tokens
        # A step carries up to `batch_size` prompt tokens plus one token per running sequence.
        cparams.n_batch = batch_size + parallel
        cparams.n_ubatch = batch_size + parallel
        cparams.n_seq_max = lanes
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = True  # one pool of cells for all sequences, shareable between them
        cparams.type_k = cparams.type_v = KV_GGML_TYPES[kv_type]  # quantized V turns flash attention on
        cparams.no_perf = True
        if embeddings:
            cparams.n_ctx = n_ctx_seq
            cparams.kv_unified = False
            # A non-causal batch is read in one pass: it must hold the longest input.
            cparams.n_batch = cparams.n_ubatch = max(batch_size, n_ctx_seq)
            cparams.embeddings = True
            cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the model's own
            # Flash attention skips the masked pairs of different inputs in one batch: measured here,
            # passes of short sentences ran 2-4x faster with it than without.
            cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            reason = "; ".join(native_log.recent) or "out of memory?"
            raise ModelLoadError(f"Cannot create a context for {path.name}: {reason}.")
        pool_tokens = int(llama_cpp.llama_n_ctx(ctx))
        n_ctx_seq = min(n_ctx_seq, pool_tokens)
    except BaseException:
        llama_cpp.llama_model_free(model)
        raise
    vocab = llama_cpp.llama_model_get_vocab(model)
    template = llama_cpp.llama_model_chat_template(model, None)
    metadata = {
        key: value
        for key in ("general.architecture", "general.name", "general.license", "general.file_type")
        if (value := _meta(model, key)) is not None
    }
    info = ModelInfo(
        path=path,
        architecture=metadata.get("general.architecture", "unknown"),
        name=metadata.get("general.name", path.stem),
        context_length=n_ctx_train,
        parameters=int(llama_cpp.llama_model_n_params(model)),
        quantization=_quantization(model),
        size_bytes=path.stat().st_size,
        chat_template=template.decode("utf-8", errors="replace") if template else None,
        bos_token=_token_text(vocab, llama_cpp.llama_vocab_bos(vocab)),
        eos_token=_token_text(vocab, llama_cpp.llama_vocab_eos(vocab)),
        add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        metadata=metadata,
    )
    return NativeModel(
        model=model,
        ctx=ctx,
        vocab=vocab,
        n_ctx_seq=n_ctx_seq,
        n_vocab=int(llama_cpp.llama_vocab_n_tokens(vocab)),
        info=info,
        pool_tokens=pool_tokens,
        lanes=lanes,
        share_prefixes=share,
        kv_type=kv_type,
        params=cparams,
    )


def tokenize(vocab: Any, text: str, *, add_special: bool) -> list[int]:
    """Thread-safe: reads only the vocabulary. Special tokens in the text (template markers) are parsed."""
    data = text.encode("utf-8")
    capacity = len(data) + 8
    buf = (llama_cpp.llama_token * capacity)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, capacity, add_special, True)
    if n < 0:
        capacity = -n
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, capacity, add_special, True)
    return list(buf[:n])


def token_bytes(vocab: Any, token: int, buf: ctypes.Array[ctypes.c_char]) -> bytes:
    """The raw bytes of one token's text (special tokens render as nothing)."""
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:
        bigger = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, bigger, len(bigger), 0, False)
        return bigger.raw[:n]
    return buf.raw[:n]
