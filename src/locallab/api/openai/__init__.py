"""OpenAI's Responses API (/v1/responses); chat completions are still in `locallab.api.routes.openai`."""
