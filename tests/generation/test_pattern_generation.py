"""generate on a T-DMCA (a GPT with the paper's LMLML layer pattern): cached decoding through the PatternKVCache gives
the tokens uncached decoding gives, greedy and beam search, long enough that the local ring buffer wraps many times
and many compressed slots complete; a one-token prompt decodes; the static cache is never taken."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import tformer
from tests.conftest import randomize
from tformer.config import ModelConfig
from tformer.models import GPT

NEW_TOKENS = 44  # block 4, look_back 1: the ring of 8 slots wraps 6 times; compression 3: 16 slots complete


def _model() -> GPT:
    config = ModelConfig.preset("gpt2-tiny", n_layers=5, attention_pattern="LMLML", local_block_size=4,
                                compression=3, dropout=0.0, attention_dropout=0.0)
    return randomize(GPT(config)).eval()


def _prompt(batch: int = 2, length: int = 5) -> Tensor:
    return torch.randint(3, 98, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("num_beams", [1, 2])
def test_cached_generation_equals_uncached(num_beams: int) -> None:
    model, prompt = _model(), _prompt()
    settings = dict(max_new_tokens=NEW_TOKENS, num_beams=num_beams, eos_token_id=[])
    cached = tformer.generate(model, prompt, **settings)
    uncached = tformer.generate(model, prompt, use_cache=False, **settings)
    assert cached.shape == (2, 5 + NEW_TOKENS)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, 5:].tolist())) > 3  # the model says something, not one token over and over


def test_cached_generation_of_left_padded_prompts_equals_uncached() -> None:
    model, prompt = _model(), _prompt(length=8)
    mask = torch.ones_like(prompt)
    mask[1, :4] = 0
    settings = dict(max_new_tokens=NEW_TOKENS, eos_token_id=[], attention_mask=mask)
    assert torch.equal(tformer.generate(model, prompt, **settings),
                       tformer.generate(model, prompt, use_cache=False, **settings))


def test_a_one_token_prompt_decodes_as_the_uncached_model_reads_its_output() -> None:
    model, prompt = _model(), _prompt(length=1)
    sequences = tformer.generate(model, prompt, max_new_tokens=NEW_TOKENS, eos_token_id=[])
    assert sequences.shape == (2, 1 + NEW_TOKENS)
    with torch.no_grad():  # greedy: each token is the argmax of the uncached logits of the sequence before it
        logits = model(sequences[:, :-1]).logits
    assert torch.equal(logits.argmax(-1), sequences[:, 1:])
    scores = tformer.generate(model, prompt, max_new_tokens=NEW_TOKENS, eos_token_id=[], return_scores=True).scores
    torch.testing.assert_close(scores, logits.log_softmax(-1).max(-1).values, atol=1e-5, rtol=0)


def test_generate_keeps_the_dynamic_cache_and_refuses_the_static_one_in_one_line() -> None:
    model, prompt = _model(), _prompt()
    for implementation in (None, "dynamic"):
        tformer.generate(model, prompt, max_new_tokens=3, cache_implementation=implementation)
    with pytest.raises(ValueError, match=r"^attention_pattern='LMLML' has local or compressed layers, whose caches "
                                         r"\(a ring buffer, compressed slots\) have no static form"):
        tformer.generate(model, prompt, max_new_tokens=3, cache_implementation="static")
