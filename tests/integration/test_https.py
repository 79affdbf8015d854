"""HTTPS with LOCALLAB_SSL_CERTFILE/KEYFILE: clients that verify the certificate talk to a real server,
with an API key, as docs/DEPLOYMENT.md describes for a LAN."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import trustme

from tests.conftest import free_port, poll
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

KEY = "a-long-test-key-for-https-0123456789"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("https")
    cert, key, ca_file = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    server = Server(
        tmp,
        LOCALLAB_SSL_CERTFILE=str(cert),
        LOCALLAB_SSL_KEYFILE=str(key),
        LOCALLAB_API_KEYS=KEY,
        LOCALLAB_PARALLEL="2",
    )
    server.url = f"https://127.0.0.1:{server.port}"
    try:
        _wait_ready(server, ca_file)
        yield server, ca_file
    finally:
        server.stop()


def _trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _wait_ready(server: Server, ca_file: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {server.log.read_text()}")
        try:
            r = httpx.get(f"{server.url}/health/ready", verify=_trusting(ca_file), timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready after {timeout}s: {server.log.read_text()}")


def test_a_verifying_client_is_served_over_https(https_server: tuple[Server, Path]) -> None:
    server, ca_file = https_server
    with httpx.Client(base_url=server.url, verify=_trusting(ca_file), timeout=120) as client:
        assert client.get("/health/ready").json() == {"status": "ready", "model": "smollm2-135m-instruct"}
        assert client.get("/models/current").status_code == 401  # the key still guards every route
        r = client.post(
            "/generate",
            json={"prompt": "Say hi", "max_length": 8},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 200 and r.json()["response"]
    assert "serving smollm2-135m-instruct on https://" in server.log.read_text()


def test_a_client_that_does_not_trust_the_certificate_is_refused(https_server: tuple[Server, Path]) -> None:
    server, _ = https_server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/health")
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the HTTPS port gets no answer
        httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)


def test_openai_client_streams_over_https(https_server: tuple[Server, Path]) -> None:
    server, ca_file = https_server
    http_client = httpx.Client(verify=_trusting(ca_file))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, http_client=http_client)
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=12,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    http_client.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_cacert_reads_readiness(https_server: tuple[Server, Path]) -> None:
    server, ca_file = https_server
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca_file), f"{server.url}/health/ready"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"status":"ready"' in out.stdout


def _guide_blocks(containing: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "DEPLOYMENT.md").read_text()
    blocks = [b for b in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M) if containing in b]
    assert len(blocks) == 1, containing
    return str(blocks[0])


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None, reason="no openssl/curl")
def test_the_deployment_guide_gets_from_nothing_to_https_with_a_key(tmp_path: Path) -> None:
    """docs/DEPLOYMENT.md, "On a LAN or a phone", steps 1 to 3 as written (another port than 8443)."""
    port = str(free_port())
    subprocess.run(
        ["bash", "-c", _guide_blocks("openssl req")], cwd=tmp_path, check=True, capture_output=True
    )
    assert (tmp_path / "cert.pem").is_file() and (tmp_path / "key.pem").is_file()

    start = _guide_blocks("locallab start").replace("8443", port).strip().splitlines()
    exports, command = start[:-1], start[-1]
    script = "\n".join([*exports, 'printf %s "$LOCALLAB_API_KEYS" > api-key', f"exec {command}"])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAB_")}
    environment.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        LOCALLAB_MODELS_DIR=str(tmp_path / "models"),
        LOCALLAB_THREADS="2",
    )
    if environment.get("PYTHONPATH"):  # the server runs in tmp_path: relative entries would miss
        parts = environment["PYTHONPATH"].split(os.pathsep)
        environment["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in parts if p)
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=environment, stdout=log, stderr=log)
    try:
        checks = [
            line.replace("8443", port).replace("192.168.1.20", "127.0.0.1")
            for line in _guide_blocks("curl --cacert").strip().splitlines()
        ]

        def curl(line: str) -> str:
            if server.poll() is not None:
                raise AssertionError((tmp_path / "server.log").read_text())
            key = (tmp_path / "api-key").read_text() if (tmp_path / "api-key").exists() else ""
            env = {**environment, "LOCALLAB_API_KEYS": key}
            return subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
            ).stdout

        ready = poll(lambda: curl(checks[0]), lambda out: '"status":"ready"' in out, 90)
        assert '"status":"ready"' in ready, (tmp_path / "server.log").read_text()[-2000:]
        models = json.loads(curl(checks[1]))
        assert "smollm2-135m-instruct" in [m["id"] for m in models["data"]]
        unauthorised = curl(checks[1].split(" -H ")[0])
        assert "Missing API key" in unauthorised
    finally:
        server.terminate()
        server.wait(30)
        log.close()
