"""OpenAI's API under /v1: chat completions, completions and models (chat_*), embeddings
(embeddings_*), the Responses API (responses_*); tools.py maps its tool-call shapes onto the tools core."""
