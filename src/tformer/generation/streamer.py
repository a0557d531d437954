"""Streaming: hand each new token to a callback as it is chosen, and print text as the tokens come."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from torch import Tensor

from tformer.tokenization import Tokenizer


class Streamer(Protocol):
    """What `generate(..., streamer=...)` calls, as `transformers`' `streamer` argument: `put(ids)` with the
    tokens chosen at one step, (rows,), then `end()` once generation stops. Unlike `transformers` the prompt is
    not put: only new tokens are."""

    def put(self, value: Tensor) -> None: ...

    def end(self) -> None: ...


class TextStreamer:
    """Prints the text of one generated sequence as its tokens come (seed: greedy decoding, one token per step).

    UTF-8 safe: a character split across byte-level tokens is printed once it is whole (`Tokenizer.stream()`).
    The pieces printed, joined, are `tokenizer.decode(prompt + new tokens)`: the prompt ids, if given, are printed
    with the first new token (so an argument error prints nothing). `end()` prints what is left and a newline.
    `file` defaults to sys.stdout at the time of printing; every piece is flushed.
    """

    def __init__(self, tokenizer: Tokenizer, prompt: Sequence[int] = (), file: TextIO | None = None,
                 skip_special_tokens: bool = True) -> None:
        self.stream = tokenizer.stream(skip_special_tokens)
        self.prompt = list(prompt)
        self.file = file

    def put(self, value: Tensor) -> None:
        if value.numel() != 1:
            raise ValueError(f"TextStreamer prints one sequence, but generation made {value.numel()} rows: "
                             "use one input and num_return_sequences=1")
        self._show_prompt()
        self._write(self.stream.put(int(value.reshape(-1)[0])))

    def end(self) -> None:
        self._show_prompt()
        self._write(self.stream.flush() + "\n")

    def _show_prompt(self) -> None:
        # Through the same stream as the new tokens, so they join the prompt as decode(prompt + new tokens) does.
        for token in self.prompt:
            self._write(self.stream.put(token))
        self.prompt = []

    def _write(self, text: str) -> None:
        if text:
            file = self.file or sys.stdout
            file.write(text)
            file.flush()
