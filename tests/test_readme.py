"""The README stays a short front page, and the configuration page stays true to the code: its settings
table lists every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from locallab.config.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "features" / "configuration.md"


def _settings_rows() -> dict[str, str]:
    rows = re.findall(
        r"^\| `LOCALLAB_([A-Z_]+)` \| ([^|]+) \|", CONFIGURATION.read_text(), flags=re.MULTILINE
    )
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


def test_readme_stays_a_front_page() -> None:
    # details belong in docs/: the README is what LocalLab is, the two commands, a tour and the links
    assert len(README.read_text()) <= 12_000


def test_features_index_links_every_feature_page() -> None:
    index = ROOT / "docs" / "features" / "README.md"
    text = index.read_text()
    pages = sorted(p for p in index.parent.glob("*.md") if p != index)
    missing = [p.name for p in pages if f"]({p.name}" not in text]
    assert not missing, missing
    assert "](docs/features/README.md)" in README.read_text()
