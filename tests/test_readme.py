"""The README stays true to the code: its settings table lists every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from locallab.config.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _settings_rows() -> dict[str, str]:
    rows = re.findall(r"^\| `LOCALLAB_([A-Z_]+)` \| ([^|]+) \|", README.read_text(), flags=re.MULTILINE)
    return {name.lower(): default.strip() for name, default in rows}


def test_settings_table_lists_every_setting() -> None:
    assert set(_settings_rows()) == set(Settings.model_fields)


def test_settings_table_shows_the_real_defaults() -> None:
    rows = _settings_rows()
    for name, field in Settings.model_fields.items():
        if field.default_factory is None:
            expected = "none" if field.default is None else f"`{field.default}`"
            assert rows[name] == expected, name


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
