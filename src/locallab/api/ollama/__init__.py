"""Ollama's native API under /api: routes, wire schemas, and the mapping onto LocalLab's core (wire.py)."""
