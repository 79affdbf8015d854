"""`ollama pull` of a catalog model from a Hub stand-in on loopback: NDJSON progress with the catalog's
digest, then the pulled model is listed and answers through Ollama's API."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import ollama
import pytest

from tests.hub_standin import SMOLLM2_FILE, SMOLLM2_REPO, HubStandIn, write_smollm2_hub_catalog
from tests.integration.conftest import Server
from tests.real_model import default_model_path

pytestmark = pytest.mark.integration

REPO, FILE = SMOLLM2_REPO, SMOLLM2_FILE


@pytest.fixture
def hub_url() -> Iterator[str]:
    standin = HubStandIn()
    standin.add_file(REPO, FILE, default_model_path())
    yield standin.start()
    standin.stop()


def test_ollama_pull_streams_progress_then_the_model_answers(
    start_server: Callable[..., Server], hub_url: str, tmp_path: Path
) -> None:
    sha = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    size = default_model_path().stat().st_size
    catalog = write_smollm2_hub_catalog(tmp_path, default_model_path())
    server = start_server(
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_CATALOG_FILE=str(catalog), HF_ENDPOINT=hub_url
    )
    with ollama.Client(host=server.url, timeout=120) as client:
        assert "smollm2-hub:latest" not in [m.model for m in client.list().models]
        progress = list(client.pull("smollm2-hub:latest", stream=True))
        assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
        downloading = [p for p in progress if p.total]
        assert downloading and downloading[-1].completed == downloading[-1].total == size
        assert all(p.digest == f"sha256:{sha}" for p in downloading)
        listed = {m.model: m for m in client.list().models}
        assert listed["smollm2-hub:latest"].digest == sha
        answer = client.generate(model="smollm2-hub", prompt="Hi", options={"num_predict": 4})
        assert answer.response and answer.done


def test_hf_co_name_pulls_the_file_of_that_quantization_and_answers(
    start_server: Callable[..., Server], hub_url: str
) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", HF_ENDPOINT=hub_url)
    name = f"hf.co/{REPO}:Q4_1"
    with ollama.Client(host=server.url, timeout=120) as client:
        progress = list(client.pull(name, stream=True))
        assert progress[-1].status == "success"
        assert name in [m.model for m in client.list().models]
        answer = client.chat(
            model=name, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4}
        )
        assert answer.model == name and answer.message.content
        with pytest.raises(ollama.ResponseError) as missing:
            client.pull(f"hf.co/{REPO}:Q8_0")
        assert missing.value.status_code == 404 and FILE in missing.value.error
