"""A loopback HTTP server that answers the Hugging Face Hub's routes, for download tests.

`GET /api/models/{owner}/{repo}/revision/{revision}`: the repository's file list, as `HfApi.model_info`
reads it. `HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}`: files, with the headers huggingface_hub
reads (X-Repo-Commit; ETag = the file's sha256, as for large files on the Hub; Content-Length), HTTP
Range for resuming, and the Hub's X-Error-Code on 404s. Faults on request: `cut_after` bytes ends the
next transfer early (the connection closes mid-body), and `refuse` answers 503 to every GET.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_ROUTE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)/revision/([^/?]+)(\?.*)?$")


@dataclass
class HubFile:
    data: bytes
    sha256: str = ""

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class HubStandIn:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    cut_after: int | None = None  # the next GET sends this many body bytes, then drops the connection
    refuse: bool = False  # every GET answers 503
    refuse_after_cut: bool = False  # after the cut, refuse: the Hub "went away" mid-download
    ranges: list[str] = field(default_factory=list)  # Range headers of GETs, in order
    gets: int = 0

    def add(self, repo: str, path: str, data: bytes, sha256: str = "") -> HubFile:
        self.files[(repo, path)] = HubFile(data, sha256)
        return self.files[(repo, path)]

    def add_file(self, repo: str, path: str, source: Path) -> HubFile:
        return self.add(repo, path, source.read_bytes())

    def add_folder(self, repo: str, folder: Path) -> None:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                self.add_file(repo, file.relative_to(folder).as_posix(), file)

    def _repo_info(self, repo: str) -> bytes | None:
        files = [(path, f) for (r, path), f in self.files.items() if r == repo]
        if not files:
            return None
        siblings = [
            {
                "rfilename": path,
                "size": len(f.data),
                "lfs": {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134},
            }
            for path, f in files
        ]
        return json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()

    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                info = _INFO.match(self.path)
                if info is not None:
                    payload = standin._repo_info(info.group(1))
                    self.send_response(200 if payload else 404)
                    if payload is None:
                        self.send_header("X-Error-Code", "RepoNotFound")
                    payload = payload or b"{}"
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if body:
                        self.wfile.write(payload)
                    return
                match = _ROUTE.match(self.path)
                found = standin.files.get((match.group(1), match.group(3))) if match else None
                if found is None:
                    repo_known = match is not None and any(r == match.group(1) for r, _ in standin.files)
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if repo_known else "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body:
                    standin.gets += 1
                    standin.ranges.append(self.headers.get("Range", ""))
                    if standin.refuse:
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                data = found.data
                start = 0
                wanted = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if body and wanted:
                    start = int(wanted.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{found.sha256}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                chunk = data[start:]
                if standin.cut_after is not None:
                    chunk, standin.cut_after = chunk[: standin.cut_after], None
                    standin.refuse = standin.refuse_after_cut
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The default model as a stand-in Hub repository serves it, and a catalog entry that pulls it from there.
SMOLLM2_REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_smollm2_hub_catalog(folder: Path, model: Path) -> Path:
    """A catalog file (LOCALLAB_CATALOG_FILE) with one entry, `smollm2-hub`: `model` served by the stand-in
    as SMOLLM2_REPO/SMOLLM2_FILE, with its real size and sha256."""
    catalog = folder / "catalog.toml"
    catalog.write_text(
        f"""
[[models]]
id = "smollm2-hub"
name = "SmolLM2 135M Instruct (from the Hub)"
description = "The default model, pulled from a Hub stand-in."
engine = "llama.cpp"
format = "gguf"
parameters = "135M"
quantization = "Q4_1"
context_length = 8192
license = "Apache-2.0"
size_bytes = {model.stat().st_size}
sha256 = "{hashlib.sha256(model.read_bytes()).hexdigest()}"
source = {{ repo = "{SMOLLM2_REPO}", file = "{SMOLLM2_FILE}" }}
"""
    )
    return catalog
