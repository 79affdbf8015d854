"""`locallab models pull` from a Hub stand-in on loopback, as a user runs it in a terminal, then the model
loads and answers; `models list | info | rm` on the real server."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.hub_standin import SMOLLM2_FILE, SMOLLM2_REPO, HubStandIn, write_smollm2_hub_catalog
from tests.integration.conftest import Server
from tests.real_model import default_model_path

pytestmark = pytest.mark.integration

REPO, FILE = SMOLLM2_REPO, SMOLLM2_FILE


@pytest.fixture
def hub() -> Iterator[tuple[HubStandIn, str]]:
    standin = HubStandIn()
    standin.add_file(REPO, FILE, default_model_path())
    url = standin.start()
    yield standin, url
    standin.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locallab", *args], capture_output=True, text=True, timeout=120
    )


def test_pull_shows_a_progress_bar_then_the_model_loads_and_answers(
    start_server: Callable[..., Server], hub: tuple[HubStandIn, str], tmp_path: Path
) -> None:
    standin, hub_url = hub
    sha = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    catalog = write_smollm2_hub_catalog(tmp_path, default_model_path())
    server = start_server(
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0",
        LOCALLAB_PARALLEL="2",
        LOCALLAB_CATALOG_FILE=str(catalog),
        HF_ENDPOINT=hub_url,
    )
    standin.cut_after = 30_000_000  # the connection drops once; the pull resumes by itself

    child = pexpect.spawn(
        sys.executable,
        ["-m", "locallab", "models", "pull", "smollm2-hub", "--url", server.url],
        encoding="utf-8",
        timeout=120,
        dimensions=(24, 120),
    )
    child.expect(pexpect.EOF)
    child.close()
    output = child.before or ""
    assert child.exitstatus == 0, output
    assert "━" in output and "98.4" in output and "MB" in output  # rich's bar, with the size
    assert f"sha256 {sha} verified" in output
    assert len(standin.ranges) == 2 and standin.ranges[1].startswith("bytes=")  # resumed, not restarted

    listed = _cli("models", "list", "--url", server.url)
    assert listed.returncode == 0
    rows = {line[2:].split()[0]: line for line in listed.stdout.splitlines()}
    assert "not installed" not in rows["smollm2-hub"] and "installed" in rows["smollm2-hub"]
    assert "not installed" not in rows["smollm2-135m-instruct"] and "not installed" not in rows["gemma3-270m"]

    body = {"messages": [{"role": "user", "content": "Hello"}], "model_id": "smollm2-hub", "max_length": 8}
    r = httpx.post(f"{server.url}/chat", json=body, timeout=120)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].strip()
    info = _cli("models", "info", "smollm2-hub", "--url", server.url)
    assert info.returncode == 0 and "ready" in info.stdout and f"hf://{REPO}/{FILE}" in info.stdout

    removed = _cli("models", "rm", "smollm2-hub", "--url", server.url)
    assert removed.returncode == 0 and "deleted" in removed.stdout and "98 MB" in removed.stdout
    again = _cli("models", "rm", "smollm2-hub", "--url", server.url)
    assert again.returncode == 1 and "not installed" in again.stderr
    assert httpx.get(f"{server.url}/health").json()["model"] == "smollm2-135m-instruct"
