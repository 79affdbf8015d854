"""ASGI middleware (pure ASGI: Starlette's BaseHTTPMiddleware would hide client disconnects)."""
