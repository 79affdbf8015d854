"""The browser chat page: static files served at / (no CDN, no build step)."""
