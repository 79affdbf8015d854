"""Every curl example in the README works as shown, against a real server."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def _curl_examples() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        commands += [line.split("  #")[0].strip() for line in joined.splitlines() if line.startswith("curl ")]
    return commands


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
    }
    text = " ".join(_curl_examples())
    assert all(f"localhost:8000{route}" in text for route in routes)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("command", _curl_examples())
def test_curl_example_answers(command: str, server: Server) -> None:
    command = command.split(" | ")[0]  # the curl part of a shell pipeline
    args = [a.replace("localhost:8000", f"127.0.0.1:{server.port}") for a in shlex.split(command)]
    out = subprocess.run(
        [*args, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=120, check=True
    )
    body, status = out.stdout.rsplit("\n", 1)
    expected = 400 if '"prompt": 5' in command else 200
    assert int(status) == expected, body
    if body.startswith("data: "):
        assert body.rstrip().endswith("data: [DONE]")
    elif "/metrics" in command:
        assert "locallab_requests_total" in body
    else:
        json.loads(body)


def test_the_agent_loop_example_runs(server: Server) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    example = next(b for b in blocks if "An agent loop" in b)
    code = example.replace("http://127.0.0.1:8000", server.url)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()  # the model's final answer, in text
