"""Chat templates render in a child process: a template is code from a model file, and one that loops for
ever or allocates without end must cost a 400, not a core or the server's memory.

One worker process (`python -m locallab.services.template_worker`, a fresh interpreter: no llama.cpp
threads are forked) renders one conversation at a time, under a memory limit, speaking one JSON line per
request and per answer. A render that runs past its time limit kills the worker; the next render starts
a fresh one. Everything is awaited on the event loop: no thread is ever left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from locallab.errors import ChatTemplateError

WORKER_MEMORY_BYTES = 1 << 30  # address space for the renderer: far more than any real prompt needs
_LINE_LIMIT = 64 << 20  # longest answer line read back (a rendered prompt is at most a few MB)


class TemplateRenderer:
    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one render at a time: each takes about a millisecond
        self._closed = False

    async def _start(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise ChatTemplateError("The server is shutting down.")
        if self._process is None or self._process.returncode is not None:
            await self._stop()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "locallab.services.template_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=_LINE_LIMIT,
            )
        return self._process

    async def _stop(self) -> None:
        """Kills the worker and reaps it (reading what is left closes its pipes)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.communicate(), 5)

    async def warm(self) -> None:
        """Starts the worker ahead of the first conversation (starting takes a few hundred ms)."""
        async with self._lock:
            await self._start()

    async def render(
        self,
        model_id: str,
        template: str,
        messages: Sequence[Mapping[str, Any]],
        bos: str,
        eos: str,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt text; ChatTemplateError (400) when the template fails, or runs too long. Messages
        and tools travel as JSON, so they hold only JSON values (tool calls' arguments included)."""
        request = {
            "template": template,
            "messages": [dict(m) for m in messages],
            "bos": bos,
            "eos": eos,
            "tools": tools,
        }
        async with self._lock:
            process = await self._start()
            try:
                try:
                    line = await self._exchange(process, request)
                except (BrokenPipeError, ConnectionResetError):  # the worker died since the last render
                    await self._stop()
                    line = await self._exchange(await self._start(), request)
            except asyncio.TimeoutError:
                await self._stop()
                raise ChatTemplateError(
                    f"The chat template of '{model_id}' took longer than {self.seconds:g} s to render; "
                    'it may loop for ever. Use POST /generate with "raw": true.'
                ) from None
            except BaseException:  # cancelled, or the pipe broke: its answer must not reach the next one
                await asyncio.shield(self._stop())
                raise
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):  # EOF: the worker died (out of memory, killed)
                await self._stop()
                raise ChatTemplateError(
                    f"The chat template of '{model_id}' crashed its renderer (it may use too much "
                    'memory). Use POST /generate with "raw": true.'
                )
        if "error" in answer:
            raise ChatTemplateError(str(answer["error"]))
        return str(answer["text"])

    async def _exchange(self, process: asyncio.subprocess.Process, request: Mapping[str, object]) -> bytes:
        if process.stdin is None or process.stdout is None:  # pragma: no cover - pipes were asked for
            raise ChatTemplateError("The chat template renderer has no pipes.")
        process.stdin.write(json.dumps(request).encode() + b"\n")
        await process.stdin.drain()
        return await asyncio.wait_for(process.stdout.readline(), self.seconds)

    async def close(self) -> None:
        self._closed = True
        await self._stop()


def _serve() -> None:  # pragma: no cover - runs in the worker process
    import resource

    from locallab.services.chat_template import render_chat

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    for line in sys.stdin:
        request = json.loads(line)
        try:
            text = render_chat(
                request["template"],
                request["messages"],
                bos_token=request["bos"],
                eos_token=request["eos"],
                tools=request.get("tools"),
            )
            answer = {"text": text}
        except ChatTemplateError as exc:
            answer = {"error": exc.detail}
        except MemoryError:
            answer = {"error": "The model's chat template used more memory than allowed."}
        except Exception as exc:  # anything else a template provokes is the template's fault
            answer = {"error": f"The model's chat template failed to render: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
