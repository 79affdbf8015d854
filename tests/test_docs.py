"""docs/ stays true to the code: the site builds with --strict, every relative link resolves, the API
document names real routes and statuses, and the troubleshooting guide quotes messages that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

from locallab.api.errors import STATUS_FOR
from locallab.config.remote import load_remote_models
from tests.conftest import AppFactory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _without_code(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    # Python-Markdown's toc slugify, which mkdocs uses (GitHub's agrees for these headings)
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL), re.M)
    return {_slug(h.replace("`", "")) for h in headings}


def test_docs_site_builds_with_strict(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "site" / "DEPLOYMENT" / "index.html").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(_without_code(page.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{page.name}: {target}"


def test_api_document_names_real_routes(make_client: AppFactory) -> None:
    schema = make_client().get("/openapi.json").json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    documented = set(re.findall(r"^#### (GET|POST|DELETE) `([^`]+)`", (DOCS / "API.md").read_text(), re.M))
    assert documented <= served, documented - served
    seed = {("POST", "/generate"), ("POST", "/chat"), ("POST", "/models/load"), ("GET", "/models/current"),
            ("GET", "/models/available"), ("GET", "/system/info"), ("GET", "/health")}  # fmt: skip
    assert seed | {("GET", "/health/ready"), ("POST", "/generate/batch")} <= documented


def test_api_document_lists_every_error_status() -> None:
    text = (DOCS / "API.md").read_text()
    for status in {*STATUS_FOR.values(), 401, 403, 405, 413, 429}:
        assert f"`{status}`" in text, status


def _source_text() -> str:
    text = "\n".join(p.read_text() for p in (ROOT / "src" / "locallab").rglob("*.py"))
    return re.sub(r"\"\s*\n\s*f?\"", "", text)  # join implicitly concatenated string literals


def test_troubleshooting_quotes_messages_the_code_writes() -> None:
    quoted = re.findall(r'^#{3,4} "(.+)"$', (DOCS / "TROUBLESHOOTING.md").read_text(), flags=re.MULTILINE)
    assert len(quoted) >= 40
    source = _source_text()
    missing = [q for q in quoted if q not in source]
    assert not missing, missing


def test_readme_links_into_docs() -> None:
    text = (ROOT / "README.md").read_text()
    for page in ("docs/API.md", "docs/DEPLOYMENT.md", "docs/TROUBLESHOOTING.md", "docs/features/README.md"):
        assert f"]({page}" in text, page


def _fenced(language: str) -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}", block)
        for page in PAGES
        for block in re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    ]


def test_yaml_json_and_toml_examples_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _fenced("yaml") and _fenced("json") and _fenced("toml")
    for where, block in _fenced("yaml"):
        assert yaml.safe_load(block), where
    for where, block in _fenced("json"):
        if "..." not in block and "…" not in block:  # README shows abridged answers
            assert json.loads(block), where
    monkeypatch.setenv("VLLM_API_KEY", "test")
    for where, block in _fenced("toml"):
        tomllib.loads(block)
        if "upstreams" in block:  # a remote models file: the server must accept it as written
            config = tmp_path / "remote.toml"
            config.write_text(block)
            assert load_remote_models(config), where
