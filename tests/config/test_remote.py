"""The remote models file: what it accepts, and clear refusals for what it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from locallab.cli.main import main
from locallab.config.remote import RemoteConfigError, load_remote_models, upstream_base
from locallab.config.settings import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "remote.toml"
    path.write_text(text)
    return path


def test_a_model_with_two_upstreams_and_a_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_VLLM_KEY", "secret")
    path = write(
        tmp_path,
        '[models."llama-70b"]\n'
        'upstreams = ["http://gpu-1:8000/v1", "http://gpu-2:8000"]\n'
        'upstream_model = "meta-llama/Llama-3.3-70B-Instruct"\n'
        'api_key_env = "TEAM_VLLM_KEY"\n'
        "cooldown = 30\n",
    )
    model = load_remote_models(path)["llama-70b"]
    assert model.upstreams == ("http://gpu-1:8000/v1", "http://gpu-2:8000/v1")
    assert model.upstream_model == "meta-llama/Llama-3.3-70B-Instruct"
    assert model.api_key == "secret" and model.cooldown == 30.0
    assert (model.max_failures, model.health_interval) == (3, 5.0)


def test_the_upstream_model_defaults_to_the_id(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.qwen]\nupstreams = ["http://127.0.0.1:11434/v1/"]\n')
    model = load_remote_models(path)["qwen"]
    assert model.upstream_model == "qwen" and model.upstreams == ("http://127.0.0.1:11434/v1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.a]\n", "upstreams must be a non-empty list"),
        ('[models.a]\nupstreams = ["ftp://x/v1"]\n', "not an http:// or https:// URL"),
        ('[models.a]\nupstreams = ["http://user:pw@x/v1"]\n', "no user, password"),
        ('[models.a]\nupstreams = ["http://x"]\nretries = 3\n', "unknown key 'retries'"),
        ('[models.a]\nupstreams = ["http://x"]\ncooldown = -1\n', "cooldown must be a number"),
        ('[models.a]\nupstreams = ["http://x"]\napi_key_env = "NOT_SET_ANYWHERE_42"\n', "is not set"),
        ('[models.a]\nupstreams = ["http://x"]\napi_key = "k"\napi_key_env = "K"\n', "not both"),
        ('[models."bad id"]\nupstreams = ["http://x"]\n', "model ids use"),
        ("[server]\nport = 1\n", "unknown table 'server'"),
        ("models = [", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RemoteConfigError, match=message):
        load_remote_models(write(tmp_path, text))


def test_upstream_urls_are_normalised_to_the_openai_base() -> None:
    assert upstream_base("https://llm.internal/openai/v1") == "https://llm.internal/openai/v1"
    assert upstream_base("http://10.0.0.5:8000/") == "http://10.0.0.5:8000/v1"


def test_the_server_refuses_to_start_with_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[models.a]\nupstreams = ["ftp://x"]\n')
    with pytest.raises(ValidationError):
        Settings(remote_models=path)
    assert main(["start", "--remote-models", str(path)]) == 2
    assert "remote_models" in capsys.readouterr().err
    assert main(["start", "--remote-models", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
