"""`locallab doctor`: one line per check, a fix for anything not ok, exit 1 on any failure."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from locallab.cli.doctor import build_features, check_build_against_cpu, check_decode
from locallab.cli.main import main
from tests.conftest import free_port
from tests.real_model import default_model_path

LINE = re.compile(r"^(ok|warn|fail)\s+\S.*$")


@pytest.fixture(autouse=True)
def _no_locallab_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LOCALLAB_"):
            monkeypatch.delenv(name)


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    status = main(["doctor", *args])
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    return status, lines


def _line(lines: list[str], name: str, words: str = "") -> str:
    found = [
        line
        for line in lines
        if (line.split()[1] == name or line.split()[1:3] == name.split()) and words in line
    ]
    assert found, (name, words, lines)
    return found[0]


def test_build_features_are_read_from_llama_cpp_system_info() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 1 | LLAMAFILE = 1 |"
    assert build_features(info) == {"SSE3", "AVX", "AVX2", "AMX_INT8", "LLAMAFILE"}


def test_a_build_using_instructions_the_cpu_lacks_fails_with_the_rebuild_command() -> None:
    check = check_build_against_cpu({"AVX", "AVX2", "AVX512"}, {"avx", "avx2"})
    assert check.outcome == "fail" and "AVX512" in check.message and "Illegal instruction" in check.message
    assert check.fix is not None and "llama-cmake-args.sh" in check.fix


def test_amx_kernels_are_a_warning_even_where_the_cpu_advertises_amx() -> None:
    check = check_build_against_cpu({"AVX2", "AMX_INT8"}, {"avx2", "amx_int8", "amx_tile"})
    assert check.outcome == "warn" and "AMX" in check.message and check.fix


def test_a_build_that_matches_the_cpu_is_ok() -> None:
    assert check_build_against_cpu({"AVX", "AVX2", "FMA"}, {"avx", "avx2", "fma", "sse3"}).outcome == "ok"


def test_a_decode_that_crashes_is_a_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00")  # a truncated header: the child process fails
    check = check_decode(broken)
    assert check.outcome == "fail" and "decoding failed" in check.message


def test_invalid_settings_fail(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _doctor(capsys, "--port", "0")
    assert status == 1
    assert lines[0].startswith("fail  settings") and "port" in lines[0]


def test_every_problem_is_a_fail_line_with_a_fix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    not_a_dir = tmp_path / "models"
    not_a_dir.write_text("a file where the models directory should be")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, lines = _doctor(
            capsys,
            "--host", "0.0.0.0",
            "--port", str(port),
            "--models-dir", str(not_a_dir),
            "--model", "no-such-model",
            "--ssl-certfile", str(tmp_path / "missing-cert.pem"),
            "--ssl-keyfile", str(tmp_path / "missing-key.pem"),
            "--api-keys-file", str(tmp_path / "no-keys-here"),
        )  # fmt: skip
    assert status == 1
    for name, words in (
        ("port", "already in use"),
        ("models dir", "not a directory"),
        ("access", "keys file"),
        ("https", "does not exist"),
        ("model", "Unknown model 'no-such-model'"),
    ):
        line = _line(lines, name, words)
        assert line.startswith("fail"), line
        assert "Fix:" in line, line
    assert _line(lines, "python").startswith("ok")


@pytest.mark.integration
def test_a_healthy_setup_passes_and_decodes_the_default_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    default_model_path()  # the default model must be installed for this test
    status, lines = _doctor(
        capsys, "--port", str(free_port()), "--models-dir", str(tmp_path / "models"), "--parallel", "2"
    )
    assert status == 0, lines
    assert not [line for line in lines if line.startswith("fail")]
    for name in ("python", "packages", "llama.cpp", "settings", "access", "port", "models dir", "model",
                 "memory", "decode", "gpu"):  # fmt: skip
        _line(lines, name)
    assert "decodes on this CPU" in _line(lines, "decode")
    assert "smollm2-135m-instruct" in _line(lines, "model")


def test_an_open_bind_fails_without_a_key_and_warns_when_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--host", "0.0.0.0", "--port", str(free_port()), "--model", "")
    status, lines = _doctor(capsys, *common)
    assert status == 1 and "without an API key" in _line(lines, "access")
    status, lines = _doctor(capsys, *common, "--allow-no-auth")
    assert _line(lines, "access").startswith("warn") and "anyone on the network" in _line(lines, "access")
