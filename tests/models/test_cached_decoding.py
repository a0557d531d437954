"""Cached decoding equals uncached, for every family that generates, on both caches of the one cache contract.

The families: GPT-2 style (pre-norm, final LayerNorm), GPT-1 style (post-norm), the decoder-only T-D (a GPT with
an untied head), the original encoder-decoder and a Marian-style one ([sin | cos] sinusoids, SiLU,
final_logits_bias, untied source and target embeddings). Each is checked at the model (logits of every step against
one forward over the whole sequence) and through `generate` (greedy and beam search: ids and scores), with and
without padding (left padding of the prompt; right padding of an encoder-decoder's source).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import tformer
from tformer.config import ModelConfig
from tformer.models import GPT, EncoderDecoder, TransformerModel

ATOL = 1e-5
SRC = Path(__file__).resolve().parents[2] / "src" / "tformer"
MARIAN_STYLE = dict(sinusoidal_layout="halves", activation="silu", final_logits_bias=True, layer_norm_eps=1e-5,
                    share_encoder_decoder_embeddings=False, tie_word_embeddings=False, pad_token_id=1,
                    decoder_start_token_id=1, eos_token_id=0)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("gpt2-tiny", {}),
    "gpt1": ("gpt1-tiny", {}),
    "td": ("gpt2-tiny", dict(n_layers=3, tie_word_embeddings=False)),
    "transformer": ("transformer-tiny", {}),
    "marian": ("transformer-tiny", MARIAN_STYLE),
}


def _model(family: str) -> TransformerModel:
    preset, overrides = FAMILIES[family]
    model = tformer.build_model(ModelConfig.preset(preset, **overrides))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial weights: the default init gives near-uniform logits that hide mistakes
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and "table" not in name:
                noise = torch.randn(tensor.shape, generator=generator) * 0.2
                tensor.copy_(noise + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


def _ids(batch: int, length: int, seed: int) -> Tensor:
    return torch.randint(3, 99, (batch, length), generator=torch.Generator().manual_seed(seed))


def _padding(length: int, padded: bool, encoder_decoder: bool) -> Tensor:
    mask = torch.ones(2, length, dtype=torch.long)
    if padded:
        if encoder_decoder:
            mask[1, length - 3:] = 0  # a shorter source, right-padded
        else:
            mask[1, :3] = 0  # a shorter prompt, left-padded
    return mask


def _new_cache(model: Any, kind: str, slots: int) -> Any:
    return model.new_cache() if kind == "dynamic" else model.new_static_cache(2, slots)


def _key_mask(mask: Tensor, kind: str, upto: int, slots: int) -> Tensor:
    """The 1/0 token mask over the keys a layer attends to: the positions so far (dynamic), every slot (static)."""
    if kind == "dynamic":
        return mask[:, :upto]
    return torch.cat([mask, mask.new_ones(mask.size(0), slots - mask.size(1))], dim=1)


def _gpt_steps(model: GPT, kind: str, padded: bool) -> tuple[Tensor, Tensor, Tensor]:
    ids, slots, prompt = _ids(2, 9, seed=1), 12, 4
    mask = _padding(9, padded, encoder_decoder=False)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    full = model(ids, attention_mask=mask if padded else None, position_ids=position_ids).logits
    cache = _new_cache(model, kind, slots)
    steps = []
    for start, end in [(0, prompt), *((t, t + 1) for t in range(prompt, 9))]:
        # Half the calls name their positions, half let the cache continue after what it holds.
        positions = torch.arange(start, end) if start % 2 == 0 else None
        steps.append(model(ids[:, start:end], attention_mask=_key_mask(mask, kind, end, slots) if padded else None,
                           position_ids=position_ids[:, start:end], cache=cache, cache_position=positions).logits)
    return torch.cat(steps, dim=1), full, mask.bool()


def _seq2seq_steps(model: EncoderDecoder, kind: str, padded: bool) -> tuple[Tensor, Tensor, Tensor]:
    source, target, slots = _ids(2, 7, seed=2), _ids(2, 6, seed=3), 8
    source_mask = _padding(7, padded, encoder_decoder=True)
    full = model(source, source_mask, decoder_input_ids=target).logits
    encoded = model.encode(source, source_mask)
    cache = _new_cache(model, kind, slots)
    steps = []
    for start, end in [(0, 2), *((t, t + 1) for t in range(2, 6))]:
        positions = torch.arange(start, end) if start % 2 == 0 else None
        steps.append(model(attention_mask=source_mask, decoder_input_ids=target[:, start:end],
                           encoder_outputs=encoded, cache=cache, cache_position=positions).logits)
    return torch.cat(steps, dim=1), full, torch.ones(2, 6, dtype=torch.bool)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cached_forward_steps_give_the_uncached_logits(family: str, kind: str, padded: bool) -> None:
    model = _model(family)
    with torch.no_grad():
        if isinstance(model, GPT):
            cached, full, real = _gpt_steps(model, kind, padded)
        else:
            assert isinstance(model, EncoderDecoder)
            cached, full, real = _seq2seq_steps(model, kind, padded)
    assert full.abs().max() > 1.0  # the weights are not trivially small
    assert (cached[real] - full[real]).abs().max().item() <= ATOL


def _generate(model: TransformerModel, padded: bool, **kwargs: Any) -> Any:
    encoder_decoder = isinstance(model, EncoderDecoder)
    ids = _ids(2, 7, seed=4)
    mask = _padding(7, padded, encoder_decoder)
    return tformer.generate(model, ids.masked_fill(mask == 0, 1), mask, max_new_tokens=8, eos_token_id=[],
                            return_scores=True, **kwargs)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("search", [dict(), dict(num_beams=3, num_return_sequences=2)], ids=["greedy", "beam"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_generate_on_either_cache_gives_the_uncached_ids_and_scores(family: str, search: dict[str, Any],
                                                                   padded: bool) -> None:
    model = _model(family)
    uncached = _generate(model, padded, use_cache=False, **search)
    assert uncached.scores.unique().numel() > 3  # the scores vary, so a mistake shows
    for kind in ("dynamic", "static"):
        cached = _generate(model, padded, cache_implementation=kind, **search)
        assert torch.equal(cached.sequences, uncached.sequences), kind
        assert (cached.scores - uncached.scores).abs().max().item() <= ATOL, kind


def test_layers_and_models_never_branch_on_the_cache_kind() -> None:
    """Every cache answers one contract: no isinstance check of a cache and no `.static` flag in layers/ or models/,
    and attention no longer turns is_causal off for one kind of cache."""
    for folder in ("layers", "models"):
        for path in sorted((SRC / folder).glob("*.py")):
            text = path.read_text()
            assert not re.search(r"isinstance\([^)]*Cache", text), path
            assert not re.search(r"\.static\b", text), path
            assert "cache.static" not in text and "StaticLayerKVCache" not in text, path
