"""The command line: `locallab start` exposes every setting as a flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from locallab.cli.main import _settings_from, build_parser, main
from locallab.config.settings import Settings


def test_start_help_lists_every_setting_with_its_env_variable() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["start"].format_help()  # type: ignore[union-attr]
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in text
        assert f"LOCALLAB_{name.upper()}" in text


def test_flags_override_settings() -> None:
    args = build_parser().parse_args(["start", "--port", "9001", "--host", "0.0.0.0", "--model", "/m/x.gguf"])
    settings = _settings_from(args)
    assert (settings.port, settings.host, settings.model) == (9001, "0.0.0.0", "/m/x.gguf")


def test_invalid_setting_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", "--port", "99999"]) == 2
    assert "port" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "locallab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("locallab ")


def test_start_on_a_port_in_use_says_so_before_loading_anything(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["start", "--port", str(port), "--model", ""]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is already in use" in err and "--port" in err


def test_start_with_an_unusable_data_dir_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    from tests.conftest import free_port

    assert main(["start", "--model", "", "--port", str(free_port()), "--data-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "cannot open the stored responses database" in err and "LOCALLAB_DATA_DIR" in err
