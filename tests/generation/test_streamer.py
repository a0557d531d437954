"""generate(..., streamer=...): each step's tokens are handed over as they are chosen, then end() once."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import Tensor

import tformer
from tests.generation.conftest import Pair
from tformer.generation import TextStreamer


class Recorder:
    """A streamer that keeps what it is given."""

    def __init__(self) -> None:
        self.steps: list[Tensor] = []
        self.ended = 0

    def put(self, value: Tensor) -> None:
        assert self.ended == 0, "put after end"
        self.steps.append(value.clone())

    def end(self) -> None:
        self.ended += 1


@pytest.mark.parametrize("args", [dict(), dict(do_sample=True, seed=0, temperature=1.5, num_return_sequences=2),
                                  dict(eos_token_id=None)], ids=["greedy", "sampling", "config-eos"])
def test_streamed_tokens_are_the_new_tokens(pair: Pair, args: dict[str, Any]) -> None:
    args = {"max_new_tokens": 8, "eos_token_id": [], **args}
    recorder = Recorder()
    streamed = tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, streamer=recorder, **args)
    plain = tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, **args)
    assert torch.equal(streamed, plain)  # streaming changes nothing
    new = torch.stack(recorder.steps, dim=1)
    assert new.shape == (plain.size(0), len(recorder.steps))
    assert torch.equal(new, plain[:, plain.size(1) - new.size(1):])
    assert recorder.ended == 1


def test_beam_search_refuses_a_streamer(pair: Pair) -> None:
    with pytest.raises(ValueError, match="streamer .* beam search"):
        tformer.generate(pair.ours, pair.input_ids, max_new_tokens=3, num_beams=2, streamer=Recorder())


def test_text_streamer_prints_the_decoded_sequence() -> None:
    tok = tformer.Tokenizer.train(iter(["Café? 🎉 naïve résumé", "hello world"] * 3), kind="bpe", vocab_size=280)
    torch.manual_seed(0)
    model = tformer.build_model(tformer.ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), eos_token_id=None,
                                                           bos_token_id=None)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)  # varied tokens: stray bytes of split characters too
    prompt = tok.encode("Café")
    out = io.StringIO()
    ids = tformer.generate(model, torch.tensor([prompt]), max_new_tokens=20, do_sample=True, seed=1,
                           streamer=TextStreamer(tok, prompt=prompt, file=out))
    assert out.getvalue() == tok.decode(ids[0]) + "\n"
    assert out.getvalue().startswith("Café")
