"""Tiny random GPT-2, GPT-1 (openai-gpt) and Marian models built by `transformers`, saved, and loaded by tformer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

import tformer
from tests.conftest import randomize
from tests.dev_dependency import import_dev

transformers = import_dev("transformers")

VOCAB = 99
MAX_POSITIONS = 64


@dataclass
class Pair:
    """One random model twice: `theirs` (transformers) and `ours` (tformer, loaded from its saved folder)."""

    name: str
    theirs: Any
    ours: Any
    input_ids: torch.Tensor  # a batch of 2; decoder-only: row 1 is left-padded, encoder-decoder: row 1 right-padded
    attention_mask: torch.Tensor

    @property
    def is_encoder_decoder(self) -> bool:
        return self.name == "marian"


def _gpt2() -> Any:
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=MAX_POSITIONS, n_embd=32, n_layer=2, n_head=4,
                                     n_inner=48, bos_token_id=98, eos_token_id=98)
    return transformers.GPT2LMHeadModel(config)


def _gpt1() -> Any:
    config = transformers.OpenAIGPTConfig(vocab_size=VOCAB, n_positions=MAX_POSITIONS, n_embd=32, n_layer=2, n_head=4)
    return transformers.OpenAIGPTLMHeadModel(config)


def _marian() -> Any:
    config = transformers.MarianConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=MAX_POSITIONS,
        activation_function="swish", scale_embedding=True, pad_token_id=1, eos_token_id=0,
        decoder_start_token_id=1, dropout=0.0)  # forced_eos_token_id: MarianConfig's default (0), as real Marian has
    return transformers.MarianMTModel(config)


MAKERS = {"gpt2": _gpt2, "openai-gpt": _gpt1, "marian": _marian}
# Weight seeds and scales of the random models. At seed 0 GPT-1's N-best lists used two tokens in all; at seed 4
# each of its sequences holds four or more. A random Marian model wrote one token along every row at every seed
# and scale tried, so it is then taught (`_teach`, 40 AdamW steps) fixed source->target pairs, the fixture's two
# sources among them, whose targets vary along the row; its outputs then follow those targets, six or more distinct
# new tokens a sequence (test_fixture_outputs_vary checks the variety of all three).
WEIGHTS = {"gpt2": (0, 0.2), "openai-gpt": (4, 0.2), "marian": (3, 0.1)}
TEACH_STEPS = 40


def _inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if name == "marian":
        mask[1, 5:] = 0  # a shorter source
    else:
        mask[1, :3] = 0  # a shorter prompt, left-padded
    return ids.masked_fill(mask == 0, 1), mask


def _teach(model: Any, steps: int = TEACH_STEPS) -> Any:
    """Train a Marian model with teacher forcing on six fixed random pairs (seeded; its dropout is 0)."""
    generator = torch.Generator().manual_seed(5)
    ids, mask = _inputs("marian")
    sources = torch.cat([ids, torch.randint(2, VOCAB, (2, ids.size(1)), generator=generator)])
    masks = torch.cat([mask, torch.ones_like(mask)])
    tokens = torch.randperm(VOCAB - 3, generator=generator)[:49] + 3  # 49 different tokens
    labels = tokens[:48].view(4, 12)
    # Within the tests' 10 new tokens each target holds a bigram twice, so repetition penalties and
    # no_repeat_ngram_size have something to change, and a token shared by all (2, twice in the fixture's rows), so
    # that the parity tests' end token (the commonest) finishes beams early; the second source's comes late
    # (position 7), so that a token early in the first row ends that row only. None holds eos (0): transformers
    # stops at it by default.
    for row, (bigram, shared) in enumerate(((2, [1, 9]), (0, [7, 9]), (1, [3]), (3, [0]))):
        labels[row, bigram + 4:bigram + 6] = labels[row, bigram:bigram + 2]
        labels[row, shared] = 2
    # The first source is taught its target twice and, once, one whose repeated bigram starts with a new token, so
    # that a repetition penalty turns its greedy output there (2:1 odds, not a near tie that parity could miss).
    alternative = labels[0].clone()
    alternative[6] = tokens[48]
    sources, masks = torch.cat([sources, ids[:1], ids[:1]]), torch.cat([masks, mask[:1], mask[:1]])
    labels = torch.cat([labels, labels[:1], alternative[None]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=sources, attention_mask=masks, labels=labels).loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="package", params=list(MAKERS), ids=list(MAKERS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    name: str = request.param
    seed, std = WEIGHTS[name]
    reference = randomize(MAKERS[name]().eval(), seed=seed, std=std)
    if name == "marian":
        reference = _teach(reference)
    folder = tmp_path_factory.mktemp(f"generation-{name}")
    reference.save_pretrained(folder)
    auto = transformers.MarianMTModel if name == "marian" else transformers.AutoModelForCausalLM
    # Both read the folder's generation_config.json (Marian's forced_eos_token_id included) as their defaults.
    theirs = auto.from_pretrained(folder).eval()
    return Pair(name, theirs, tformer.from_pretrained(folder), *_inputs(name))
