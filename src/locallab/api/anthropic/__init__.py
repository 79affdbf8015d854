"""Anthropic's Messages API (/v1/messages): routes, wire schemas, and the mapping onto the core."""
