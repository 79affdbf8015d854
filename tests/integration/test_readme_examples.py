"""Every curl example and every Python example in the README and in docs/ works as shown, against a
real server.

Runs: `curl` lines in ```bash blocks that call localhost:8000 (or 127.0.0.1:8000), and ```python
blocks, with the address pointed at the test server. A ```python block preceded by the line
`<!-- example: not run (reason) -->` is skipped; examples for other machines go in ```text blocks.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
LOCAL = re.compile(r"(?:https?://)?(?:localhost|127\.0\.0\.1):8000")
NOT_RUN = "<!-- example: not run"


def _blocks(page: Path, language: str) -> list[tuple[int, str, bool]]:
    """(line number, body, runs) of each fenced block in `language`."""
    text = page.read_text()
    found = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1), not before.startswith(NOT_RUN)))
    return found


def _curl_examples(pages: list[Path]) -> list[tuple[str, str]]:
    commands = []
    for page in pages:
        for line_no, block, _ in _blocks(page, "bash"):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                if line.startswith("curl ") and LOCAL.search(line):
                    commands.append((f"{page.relative_to(ROOT)}:{line_no}", line.split("  #")[0].strip()))
    return commands


def _python_examples() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}:{line_no}", code)
        for page in PAGES
        for line_no, code, runs in _blocks(page, "python")
        if runs
    ]


def test_readme_has_curl_examples_for_every_route() -> None:
    routes = {
        "/generate",
        "/generate/batch",
        "/chat",
        "/models/available",
        "/models/current",
        "/models/load",
        "/system/info",
        "/health",
        "/health/ready",
    }
    text = " ".join(command for _, command in _curl_examples([README]))
    assert all(f"localhost:8000{route}" in text for route in routes)


def test_docs_have_examples_of_both_kinds() -> None:
    docs = [page for page in PAGES if page != README]
    assert len(_curl_examples(docs)) >= 15
    assert sum(1 for where, _ in _python_examples() if where.startswith("docs/")) >= 4


def _ids(examples: list[tuple[str, str]]) -> list[str]:
    return [where for where, _ in examples]


CURL = _curl_examples(PAGES)
PYTHON = _python_examples()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(("where", "command"), CURL, ids=_ids(CURL))
def test_curl_example_answers(where: str, command: str, server: Server) -> None:
    command = command.split(" | ")[0]  # the curl part of a shell pipeline
    args = [LOCAL.sub(f"127.0.0.1:{server.port}", a) for a in shlex.split(command)]
    out = subprocess.run(
        [*args, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=120, check=True
    )
    body, status = out.stdout.rsplit("\n", 1)
    expected = 400 if '"prompt": 5' in command else 200
    assert int(status) == expected, body
    if " -i " in f" {command} ":
        assert "x-request-id: my-trace-1" in body.lower()
    elif body.startswith("data: "):
        assert body.rstrip().endswith("data: [DONE]")
    elif "/metrics" in command:
        assert "locallab_requests_total" in body
    else:
        json.loads(body)


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=_ids(PYTHON))
def test_python_example_runs(where: str, code: str, server: Server, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(LOCAL.sub(server.url, code))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAB_")}
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**environment, "LOCALLAB_URL": server.url},
    )
    assert out.returncode == 0, f"{where}:\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{where} printed nothing"
