"""deploy/: the systemd unit passes `systemd-analyze verify`, and the unit, env file, Dockerfile and
compose file name only real settings and probe readiness. (No container engine runs here, so the image
itself is not built in the tests.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from locallab.config.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTINGS = {f"LOCALLAB_{name.upper()}" for name in Settings.model_fields}


def _settings_named(text: str) -> set[str]:
    return set(re.findall(r"\bLOCALLAB_[A-Z_]+\b", text))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    unit = (DEPLOY / "locallab.service").read_text()
    # verify checks that ExecStart exists: point it at this environment's own `locallab`
    here = Path(sys.executable).parent / "locallab"
    executable = here if here.is_file() else Path(sys.executable)
    copy = tmp_path / "locallab.service"
    copy.write_text(unit.replace("/opt/locallab/.venv/bin/locallab", str(executable)))
    out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_systemd_unit_runs_as_its_own_user_with_hardening() -> None:
    unit = (DEPLOY / "locallab.service").read_text()
    for line in (
        "User=locallab",
        "EnvironmentFile=/etc/locallab/locallab.env",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ExecStart=/opt/locallab/.venv/bin/locallab start",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, flags=re.MULTILINE), line


@pytest.mark.parametrize("name", ["locallab.service", "locallab.env", "Dockerfile", "compose.yaml"])
def test_deploy_files_name_only_real_settings(name: str) -> None:
    named = _settings_named((DEPLOY / name).read_text())
    assert named and named <= SETTINGS, named - SETTINGS


def test_dockerfile_is_multi_stage_non_root_and_probes_readiness() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) == 2
    assert "make install" in text
    assert re.search(r"^USER locallab$", text, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n.*?/health/ready", text, flags=re.MULTILINE)
    assert 'VOLUME ["/var/lib/locallab/models"]' in text
    assert 'VOLUME ["/var/lib/locallab/data"]' in text and "LOCALLAB_DATA_DIR=/var/lib/locallab/data" in text


def test_compose_file_parses_and_probes_readiness() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["locallab"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert any("/health/ready" in part for part in service["healthcheck"]["test"])
    assert any(v.startswith("models:") for v in service["volumes"])
    assert "LOCALLAB_API_KEYS" in service["environment"]
