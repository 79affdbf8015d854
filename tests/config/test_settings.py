"""Settings: one declaration, env prefix LOCALLAB_, every field described, safe defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from locallab.config.settings import Settings


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_defaults_bind_loopback_and_serve_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"LOCALLAB_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings.model == "smollm2-135m-instruct"
    assert (settings.rate_limit_per_minute, settings.rate_limit_burst) == (60, 10)
    assert settings.threads >= 1
    assert settings.models_dir.parts[-2:] == ("locallab", "models")


def test_environment_variables_use_the_locallab_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALLAB_PORT", "9123")
    monkeypatch.setenv("LOCALLAB_RATE_LIMIT_PER_MINUTE", "0")
    monkeypatch.setenv("PORT", "1")  # an unprefixed variable must not leak in
    settings = Settings()
    assert settings.port == 9123 and settings.rate_limit_per_minute == 0


def test_models_dir_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALLAB_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/data/xdg")
    assert str(Settings().models_dir) == "/data/xdg/locallab/models"


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(port=70000)
    with pytest.raises(ValidationError):
        Settings(rate_limit_burst=0)
