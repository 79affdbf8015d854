"""The chat page at / and its assets at /ui/<file>. They hold no data, so they need no API key: the
page asks for the key itself when the API answers 401."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

router = APIRouter(tags=["web"], include_in_schema=False)

ASSETS = {"app.js": "text/javascript", "markdown.js": "text/javascript", "style.css": "text/css"}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _read(name: str) -> bytes:
    return resources.files("locallab.web").joinpath(name).read_bytes()


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request) -> Response:
    # Ollama's clients probe GET / for "Ollama is running"; browsers ask for HTML and get the chat page.
    if "text/html" not in request.headers.get("accept", ""):
        return PlainTextResponse("Ollama is running", headers=_HEADERS)
    # Framing refused: no other site can overlay the page and trick clicks.
    headers = {**_HEADERS, "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}
    return HTMLResponse(_read("index.html"), headers=headers)


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: no path from the request reaches the file system
        raise HTTPException(status_code=404, detail=f"No such file: /ui/{name}.")
    return Response(_read(name), media_type=ASSETS[name], headers=_HEADERS)
