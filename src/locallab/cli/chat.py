"""`locallab chat`: a conversation in the terminal, answers streamed as they are generated.

Ctrl-C stops the answer being written (the server cancels the generation) and keeps the session;
Ctrl-D or /exit ends it. A line ending in a backslash continues on the next line.

With tools (`--tools FILE`, OpenAI function definitions as JSON), an answer that calls tools is shown
as `call name({...})` lines, and the user types each call's result, which goes back to the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from locallab.client import Client, LocalLabClientError

HELP = """Commands:
  /help            this text
  /reset           forget the conversation (keeps the system prompt)
  /save [file]     save the conversation as JSON
  /load file       continue a saved conversation
  /model [id]      show the model, or load another one and use it
  /system <text>   set the system prompt (empty: none)
  /exit            leave (Ctrl-D too)
Ctrl-C stops an answer; a line ending in \\ continues on the next line."""


class ChatSession:
    def __init__(
        self,
        client: Client,
        console: Console,
        options: dict[str, Any],
        read_line: Callable[[str], str] = input,
        system: str | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self.console = console
        self.options = options
        self.read_line = read_line
        self.system = system
        self.tools = tools
        self.history: list[dict[str, Any]] = []

    def messages(self) -> list[dict[str, Any]]:
        prefix = [{"role": "system", "content": self.system}] if self.system else []
        return prefix + self.history

    def run(self) -> int:
        health = self.client.health()  # fails early, with a clear message, when no server answers
        self.console.print(
            f"[bold]LocalLab chat[/bold] with [cyan]{health['model']}[/cyan] at {self.client.options.url}. "
            "/help for commands.",
            highlight=False,
        )
        while True:
            try:
                text = self._read()
            except EOFError:
                self.console.print()
                return 0
            except KeyboardInterrupt:
                self.console.print("\n(Ctrl-D or /exit leaves)")
                continue
            if not text.strip():
                continue
            if text.startswith("/"):
                if self._command(text.strip()) == "exit":
                    return 0
                continue
            self._answer(text)

    def _read(self) -> str:
        lines = [self.read_line(">>> ")]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(self.read_line("... "))
        return "\n".join(lines)

    def _answer(self, text: str) -> None:
        if self.tools:
            self._answer_with_tools(text)
            return
        self.history.append({"role": "user", "content": text})
        parts: list[str] = []
        stream = self.client.stream_chat(self.messages(), **self.options)
        try:
            for piece in stream:
                parts.append(piece)
                self.console.out(piece, end="", highlight=False)
                self.console.file.flush()
            self.console.out("")
        except KeyboardInterrupt:
            self.console.print("\n[stopped]", style="yellow", markup=False)
        except LocalLabClientError as exc:
            self.console.print(f"\n[red]error:[/red] {exc.detail}", highlight=False)
            self.history.pop()
            return
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # ends the HTTP stream: the server frees the generation
        self.history.append({"role": "assistant", "content": "".join(parts)})

    def _answer_with_tools(self, text: str) -> None:
        """Whole answers (not streamed): each call is shown, and its result asked for, until the model
        answers in text."""
        turn = len(self.history)
        self.history.append({"role": "user", "content": text})
        try:
            while True:
                choice = self.client.chat(self.messages(), tools=self.tools, **self.options)["choices"][0]
                message = choice["message"]
                if message.get("content"):
                    self.console.out(message["content"], highlight=False)
                calls = message.get("tool_calls") or []
                self.history.append({"role": "assistant", "content": message.get("content") or "", **(
                    {"tool_calls": calls} if calls else {}
                )})  # fmt: skip
                if not calls:
                    return
                for call in calls:
                    function = call["function"]
                    self.console.print(
                        f"call {function['name']}({function['arguments']})", style="cyan", markup=False
                    )
                    result = self.read_line(f"result of {function['name']}> ")
                    self.history.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        except KeyboardInterrupt:
            self.console.print("\n[stopped]", style="yellow", markup=False)
        except LocalLabClientError as exc:
            self.console.print(f"\n[red]error:[/red] {exc.detail}", highlight=False)
            del self.history[turn:]

    def _command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            if name in ("/exit", "/quit"):
                return "exit"
            if name == "/help":
                self.console.print(HELP, highlight=False, markup=False)
            elif name == "/reset":
                self.history.clear()
                self.console.print("Conversation cleared.")
            elif name == "/save":
                path = Path(arg or f"locallab-chat-{time.strftime('%Y%m%d-%H%M%S')}.json")
                path.write_text(json.dumps({"messages": self.messages()}, indent=2, ensure_ascii=False))
                self.console.print(f"Saved {len(self.history)} messages to {path}.", highlight=False)
            elif name == "/load":
                self._load(Path(arg))
            elif name == "/model":
                self._model(arg)
            elif name == "/system":
                self.system = arg or None
                self.console.print("System prompt set." if arg else "System prompt removed.")
            else:
                self.console.print(f"Unknown command {name}; /help lists them.", highlight=False)
        except LocalLabClientError as exc:
            self.console.print(f"[red]error:[/red] {exc.detail}", highlight=False)
        except (OSError, ValueError, KeyError) as exc:
            self.console.print(f"[red]error:[/red] {exc}", highlight=False)
        return None

    def _load(self, path: Path) -> None:
        if not str(path):
            raise ValueError("/load needs a file name")
        messages = json.loads(path.read_text())["messages"]
        if not all(
            m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise ValueError(f"{path} is not a saved LocalLab conversation")
        self.system = next((m["content"] for m in messages if m["role"] == "system"), None)
        self.history = [m for m in messages if m["role"] != "system"]
        self.console.print(f"Loaded {len(self.history)} messages from {path}.", highlight=False)

    def _model(self, model_id: str) -> None:
        if not model_id:
            current = self.client.current_model()
            self.console.print(
                f"{current['id']} ({current['engine']}, {current['quantization']})", highlight=False
            )
            return
        self.console.print(f"Loading {model_id} ...", highlight=False)
        self.client.load_model(model_id)
        self.options["model_id"] = model_id
        self.console.print(f"Now chatting with {model_id}.", highlight=False)
