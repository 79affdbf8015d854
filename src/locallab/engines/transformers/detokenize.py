"""Streaming text from token ids with a Hugging Face tokenizer: whole characters only.

Byte-level and SentencePiece tokenizers both split some characters across tokens, and a token's text
can depend on the token before it (leading spaces). Decoding a short window of recent ids and emitting
only what the newest id added, and holding back text that ends in U+FFFD (an unfinished character),
handles both kinds without knowing which one the tokenizer is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # window start: the last emitted piece, decoded again for spacing rules
        self._read = 0  # ids before it have been emitted

    def feed(self, token: int) -> str:
        """The new text once `token` is appended; "" while a character is still incomplete."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        new = text[len(before) :]
        self._prefix = self._read
        self._read = len(self._ids)
        return new

    def flush(self) -> str:
        """Ends the stream; a character cut off by the end of generation is dropped, not garbled."""
        return ""
