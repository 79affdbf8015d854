"""Turning token bytes into text for a stream: whole UTF-8 characters only, held back at stop sequences."""

from __future__ import annotations

import codecs


class Utf8Stream:
    """Bytes in, text out; a character split across tokens comes out once all of its bytes arrived."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Ends the stream; a character cut off by the end of generation is dropped, not garbled."""
        self._decoder.reset()
        return ""


class StopMatcher:
    """Finds stop sequences in streamed text.

    Text that could still be the start of a stop sequence is held back, so a client never sees part
    of a stop sequence.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.matched: str | None = None  # the stop sequence found, once one is

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop sequence was found)."""
        if not self._stops:
            return text, False
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            first = min(hits)
            self.matched = next(s for s in self._stops if self._pending.find(s) == first)
            out = self._pending[:first]
            self._pending = ""
            return out, True
        hold = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
