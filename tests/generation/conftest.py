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
        decoder_start_token_id=1)  # forced_eos_token_id: MarianConfig's default (0), as real Marian models have
    return transformers.MarianMTModel(config)


MAKERS = {"gpt2": _gpt2, "openai-gpt": _gpt1, "marian": _marian}
# Weight seeds and scales of the random models. At seed 0, scale 0.2 (and its old final_logits_bias) the Marian
# model wrote one token for every source and position; at seed 3, scale 0.5 its greedy outputs differ between the
# two sources and along a row. At seed 0 GPT-1's N-best lists used two tokens in all; at seed 4 each of its
# sequences holds four or more (test_fixture_outputs_vary checks the variety of all three).
WEIGHTS = {"gpt2": (0, 0.2), "openai-gpt": (4, 0.2), "marian": (3, 0.5)}


def _inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if name == "marian":
        mask[1, 5:] = 0  # a shorter source
    else:
        mask[1, :3] = 0  # a shorter prompt, left-padded
    return ids.masked_fill(mask == 0, 1), mask


@pytest.fixture(scope="package", params=list(MAKERS), ids=list(MAKERS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    name: str = request.param
    seed, std = WEIGHTS[name]
    reference = randomize(MAKERS[name]().eval(), seed=seed, std=std)
    folder = tmp_path_factory.mktemp(f"generation-{name}")
    reference.save_pretrained(folder)
    auto = transformers.MarianMTModel if name == "marian" else transformers.AutoModelForCausalLM
    # Both read the folder's generation_config.json (Marian's forced_eos_token_id included) as their defaults.
    theirs = auto.from_pretrained(folder).eval()
    return Pair(name, theirs, tformer.from_pretrained(folder), *_inputs(name))
