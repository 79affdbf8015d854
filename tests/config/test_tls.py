"""HTTPS files are checked before the server starts: each problem is one sentence naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from locallab.config.tls import tls_problem


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def test_no_https_is_no_problem() -> None:
    assert tls_problem(None, None) is None


def test_a_valid_pair_is_accepted(pair: tuple[Path, Path]) -> None:
    assert tls_problem(*pair) is None


def test_one_file_without_the_other_is_refused(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    assert "LOCALLAB_SSL_KEYFILE is not set" in str(tls_problem(cert, None))
    assert "LOCALLAB_SSL_CERTFILE" in str(tls_problem(None, key))


def test_a_missing_file_is_named(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = pair
    assert tls_problem(cert, tmp_path / "nope.pem") == f"the key {tmp_path / 'nope.pem'} does not exist."


def test_a_directory_is_not_a_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, key = pair
    assert tls_problem(tmp_path, key) == f"the certificate {tmp_path} is not a file."


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_says_check_permissions(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    key.chmod(0)
    assert "cannot be read" in str(tls_problem(cert, key))


def test_garbage_and_a_foreign_key_are_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert "must be PEM files" in str(tls_problem(garbage, key))
    other = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    assert "belonging to the certificate" in str(tls_problem(cert, other))


def test_start_refuses_a_bad_certificate_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "cert.pem"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "locallab",
            "start",
            "--ssl-certfile",
            str(missing),
            "--ssl-keyfile",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOCALLAB_")},
    )
    assert out.returncode == 2
    assert f"cannot serve HTTPS: the certificate {missing} does not exist." in out.stderr
