"""`locallab generate`, `models`, `status` and `chat` as a user runs them, against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import LiveServerFactory, poll


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locallab", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_generate_reads_stdin_and_prints_plain_text(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"An old ", b"silent pond"])
    url = serve_app(engine)
    out = _run("generate", "--url", url, "--max-length", "50", stdin="Write a haiku\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "An old silent pond\n"
    assert "Write a haiku" in engine.prompts[-1]
    assert engine.requests[-1].sampling.max_tokens == 50


def test_generate_with_an_argument_and_raw(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"ok"])
    out = _run("generate", "--url", serve_app(engine), "--raw", "The sky is")
    assert out.returncode == 0 and out.stdout == "ok\n"
    assert engine.prompts[-1] == "The sky is"


def test_generate_error_exits_non_zero_with_the_detail(serve_app: LiveServerFactory) -> None:
    out = _run("generate", "--url", serve_app(FakeEngine()), "--model", "no-such-model", "hi")
    assert out.returncode == 1
    assert "Unknown model 'no-such-model'" in out.stderr and out.stdout == ""


def test_server_down_exits_non_zero_with_a_hint() -> None:
    out = _run("status", "--url", "http://127.0.0.1:9")
    assert out.returncode == 1 and "No LocalLab server answers" in out.stderr


def test_models_and_status(serve_app: LiveServerFactory) -> None:
    url = serve_app(FakeEngine())
    listing = _run("models", "list", "--url", url)
    assert listing.returncode == 0 and "* fake-chat" in listing.stdout and "not installed" in listing.stdout
    assert "fake" in _run("models", "current", "--url", url).stdout
    assert "loaded" in _run("models", "load", "fake-chat", "--url", url).stdout
    status = json.loads(_run("status", "--url", url).stdout)
    assert status["model"] == "fake-chat" and status["model_status"] == "ready"
    assert status["ready"] == "ready"


def _pythonpath() -> dict[str, str]:
    """The sources under test, when they are not the installed ones (PYTHONPATH=src)."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def _chat(url: str, *extra: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable, ["-m", "locallab", "chat", "--url", url, *extra], encoding="utf-8", timeout=20,
        env={"TERM": "dumb", "NO_COLOR": "1", "PATH": "/usr/bin:/bin", **_pythonpath()},
    )  # fmt: skip
    child.expect(">>> ")
    return child


def test_chat_streams_an_answer_and_keeps_the_conversation(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"Paris", b" is", b" the", b" capital."])
    child = _chat(serve_app(engine), "--system", "Be brief.")
    child.sendline("What is the capital of France?")
    child.expect("Paris is the capital.")
    child.expect(">>> ")
    child.sendline("And of Italy?")
    child.expect("Paris is the capital.")
    child.expect(">>> ")
    prompt = engine.prompts[-1]
    assert "Be brief." in prompt and "What is the capital of France?" in prompt
    assert "Paris is the capital." in prompt and "And of Italy?" in prompt
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_ctrl_c_stops_the_answer_not_the_session(serve_app: LiveServerFactory, tmp_path: Path) -> None:
    engine = FakeEngine([b"word "] * 500, delay=0.02)
    child = _chat(serve_app(engine))
    child.sendline("Tell me a long story")
    child.expect("word word word")
    child.sendintr()
    child.expect(r"\[stopped\]")
    child.expect(">>> ")
    assert poll(lambda: engine.cancelled, lambda n: n == 1) == 1  # the server stopped generating
    saved = tmp_path / "chat.json"
    child.sendline(f"/save {saved}")
    child.expect("Saved 2 messages")
    child.sendline("/help")
    child.expect("/reset")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    messages = json.loads(saved.read_text())["messages"]
    assert messages[0] == {"role": "user", "content": "Tell me a long story"}
    assert messages[1]["role"] == "assistant" and messages[1]["content"].startswith("word word")


def test_chat_load_reset_and_multiline(serve_app: LiveServerFactory, tmp_path: Path) -> None:
    engine = FakeEngine([b"ok"])
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Old system."}, {"role": "user", "content": "Earlier question"},
        {"role": "assistant", "content": "Earlier answer"},
    ]}))  # fmt: skip
    child = _chat(serve_app(engine))
    child.sendline(f"/load {saved}")
    child.expect("Loaded 2 messages")
    child.expect(">>> ")
    child.sendline("first line\\")
    child.expect(r"\.\.\. ")
    child.sendline("second line")
    child.expect("ok")
    child.expect(">>> ")
    assert "Old system." in engine.prompts[-1] and "Earlier answer" in engine.prompts[-1]
    assert "first line\nsecond line" in engine.prompts[-1]
    child.sendline("/reset")
    child.expect("cleared")
    child.expect(">>> ")
    child.sendline("again")
    child.expect("ok")
    child.expect(">>> ")
    assert "Earlier answer" not in engine.prompts[-1] and "Old system." in engine.prompts[-1]
    child.sendline("/bogus")
    child.expect("Unknown command")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize(
    "command", [["chat"], ["generate"], ["models", "list"], ["models", "load"], ["status"]]
)
def test_client_commands_document_url_and_api_key(command: list[str]) -> None:
    text = _run(*command, "--help").stdout
    assert "--url" in text and "LOCALLAB_URL" in text and "--api-key" in text


def test_embed_reads_stdin_lines_and_prints_json(serve_app: LiveServerFactory) -> None:
    from locallab.engines.fake import FakeEmbedder

    url = serve_app(FakeEmbedder())  # type: ignore[arg-type]
    out = _run("embed", "--url", url, "--model", "fake-chat", stdin="first text\n\nsecond text\n")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert [d["index"] for d in answer["data"]] == [0, 1] and len(answer["data"][0]["embedding"]) == 8
    refused = _run("embed", "--url", url, "--model", "fake-chat", "")
    assert refused.returncode == 1 and "empty string" in refused.stderr


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(serve_app: LiveServerFactory) -> None:
    from locallab.engines.fake import FakeEmbedder

    url = serve_app(FakeEmbedder())  # type: ignore[arg-type]
    texts = [f"text {i}" for i in range(2000)]  # far more JSON than a pipe holds
    command = [sys.executable, "-m", "locallab", "embed", "--url", url, "--model", "fake-chat", *texts]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as cli:
        assert cli.stdout is not None and cli.stderr is not None
        assert cli.stdout.read(10) == b'{"object":'  # like `| head -c 10`, then close the pipe
        cli.stdout.close()
        assert cli.wait(timeout=60) == 1
        assert b"Traceback" not in cli.stderr.read()


def test_chat_with_tools_shows_calls_and_sends_their_results(
    serve_app: LiveServerFactory, tmp_path: Path
) -> None:
    engine = FakeEngine([b'<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'])
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_time"}}]))
    child = _chat(serve_app(engine), "--tools", str(tools))
    child.sendline("What time is it?")
    child.expect_exact('call get_time({"tz": "UTC"})')
    child.expect_exact("result of get_time> ")
    child.sendline("noon")
    child.expect_exact("result of get_time> ")  # this fake model calls again, whatever it is told
    assert "<tool_response>\nnoon\n</tool_response>" in engine.prompts[-1]
    child.sendintr()
    child.expect(r"\[stopped\]")
    child.expect(">>> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
