"""The remote engine: models served by vLLM, llama.cpp's server, TGI, Ollama or another LocalLab,
through their OpenAI-compatible API, over a health-checked pool with failover."""

from locallab.engines.remote.engine import RemoteEngine

__all__ = ["RemoteEngine"]
