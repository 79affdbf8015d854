"""The llama.cpp engine (GGUF models) on llama-cpp-python's low-level C API."""

from locallab.engines.llamacpp.engine import LlamaCppEngine, load_llamacpp_engine

__all__ = ["LlamaCppEngine", "load_llamacpp_engine"]
