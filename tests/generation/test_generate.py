"""generate's behaviour on its own: KV cache == no cache, seeds, greedy limits, padding, shapes, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import tformer
from tests.generation.conftest import MAX_POSITIONS, Pair
from tformer.generation import DecoderState

ATOL = 1e-5


def _generate(pair: Pair, **kwargs: Any) -> Any:
    kwargs = {"max_new_tokens": 8, "eos_token_id": [], "return_scores": True, **kwargs}
    return tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, **kwargs)


# ----------------------------------------------------------------------------- KV cache


def test_cached_and_uncached_logits_agree_at_every_step(pair: Pair) -> None:
    """Feeding one token at a time through the KV cache gives the logits of re-reading the whole sequence."""
    cached = DecoderState(pair.ours, pair.input_ids, pair.attention_mask, copies=2, use_cache=True)
    uncached = DecoderState(pair.ours, pair.input_ids, pair.attention_mask, copies=2, use_cache=False)
    with torch.no_grad():
        for step in range(10):
            a, b = cached.next_logits(), uncached.next_logits()
            assert (a - b).abs().max() < ATOL, step
            sampled = torch.multinomial(a.softmax(-1), 1, generator=torch.Generator().manual_seed(step)).squeeze(1)
            parents = torch.tensor([1, 0, 3, 3])  # reorder rows, as beam search does
            cached.append(sampled, parents)
            uncached.append(sampled, parents)
    assert cached.cache is not None and cached.cache.length == cached.length - 1


@pytest.mark.parametrize("args", [dict(), dict(do_sample=True, seed=0, temperature=1.5, num_return_sequences=2),
                                  dict(num_beams=3, num_return_sequences=3, length_penalty=0.6)],
                         ids=["greedy", "sampling", "beam"])
def test_cache_does_not_change_tokens_or_scores(pair: Pair, args: dict[str, Any]) -> None:
    with_cache = _generate(pair, use_cache=True, **args)
    without = _generate(pair, use_cache=False, **args)
    assert torch.equal(with_cache.sequences, without.sequences)
    assert (with_cache.scores - without.scores).abs().max() < ATOL


# ----------------------------------------------------------------------------- sampling


def test_same_seed_same_output_different_seed_different_output(pair: Pair) -> None:
    args = dict(do_sample=True, temperature=2.0, num_return_sequences=3, max_new_tokens=12)
    first, again, other = (_generate(pair, seed=seed, **args).sequences for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_temperature_zero_is_greedy(pair: Pair) -> None:
    greedy = _generate(pair)
    cold = _generate(pair, do_sample=True, temperature=0, top_k=5, seed=3)
    assert torch.equal(cold.sequences, greedy.sequences)
    assert torch.equal(cold.scores, greedy.scores)


def test_tiny_top_p_samples_the_argmax(pair: Pair) -> None:
    greedy = _generate(pair).sequences
    nucleus = _generate(pair, do_sample=True, top_p=1e-6, temperature=3.0, seed=0).sequences
    assert torch.equal(nucleus, greedy)


# ----------------------------------------------------------------------------- shapes and padding


PADDED_MODES = {"greedy": dict(), "beam": dict(num_beams=3, num_return_sequences=2)}


def _padded_batch(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """Three inputs of 7, 2 and 4 tokens: prompts left-padded, sources right-padded (with the pad id 1)."""
    ids = torch.randint(2, pair.ours.config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    for row, length in ((1, 2), (2, 4)):
        if pair.is_encoder_decoder:
            mask[row, length:] = 0
        else:
            mask[row, :7 - length] = 0
    return ids.masked_fill(mask == 0, 1), mask


def _plain(pair: Pair, ids: torch.Tensor, mask: torch.Tensor | None, mode: str) -> Any:
    # No end token and no forced one: every row runs the full length, so rows generated alone line up.
    return tformer.generate(pair.ours, ids, mask, max_new_tokens=8, eos_token_id=[], forced_eos_token_id=[],
                            return_scores=True, **PADDED_MODES[mode])


@pytest.mark.parametrize("mode", list(PADDED_MODES))
def test_padded_batch_gives_each_input_what_it_gets_alone(pair: Pair, mode: str) -> None:
    """Padding (left for prompts, right for sources) changes nothing: each row's tokens and scores are the ones
    that input gets when generated on its own, unpadded."""
    ids, mask = _padded_batch(pair)
    batched = _plain(pair, ids, mask, mode)
    per_input = PADDED_MODES[mode].get("num_return_sequences", 1)
    for row in range(ids.size(0)):
        real = mask[row].bool()
        alone = _plain(pair, ids[row:row + 1, real], None, mode)
        rows = slice(row * per_input, (row + 1) * per_input)
        pads = 0 if pair.is_encoder_decoder else int((~real).sum())
        assert torch.equal(batched.sequences[rows, pads:], alone.sequences), row
        assert (batched.scores[rows] - alone.scores).abs().max() < ATOL, row


@pytest.mark.parametrize("mode", list(PADDED_MODES))
def test_padded_batch_would_differ_if_the_padding_were_seen(pair: Pair, mode: str) -> None:
    """The test above can fail here: with the pads visible (a mask of ones) the scores change far beyond its
    tolerance, and the N-best lists change their tokens (Marian's random greedy rows repeat one token per source,
    so there only the scores show it)."""
    ids, mask = _padded_batch(pair)
    masked = _plain(pair, ids, mask, mode)
    seen = _plain(pair, ids, torch.ones_like(mask), mode)
    assert (masked.scores - seen.scores).abs().max() > 100 * ATOL
    if mode == "beam":
        assert not torch.equal(masked.sequences, seen.sequences)


@pytest.mark.parametrize("args", [dict(num_beams=4, num_return_sequences=3), dict(do_sample=True, seed=0,
                                  num_return_sequences=3), dict()], ids=["beam", "sampling", "greedy"])
def test_rows_and_start(pair: Pair, args: dict[str, Any]) -> None:
    out = _generate(pair, **args)
    rows = 2 * args.get("num_return_sequences", 1)
    if pair.is_encoder_decoder:
        assert (out.sequences[:, 0] == pair.ours.config.decoder_start_token_id).all()
        assert out.sequences.size(1) == 1 + 8
    else:
        assert torch.equal(out.sequences[:, :7], pair.input_ids.repeat_interleave(rows // 2, dim=0))
        assert out.sequences.size(1) == 7 + 8
    assert out.sequences.size(0) == rows
    assert out.scores.shape == ((rows,) if "num_beams" in args else (rows, 8))
    assert torch.equal(tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=8,
                                        eos_token_id=[], **args), out.sequences)


def test_finished_sequences_are_padded(pair: Pair) -> None:
    greedy = _generate(pair, max_new_tokens=6).sequences
    eos = int(greedy[0, -5])  # the second new token of row 0: row 0 ends there
    out = _generate(pair, max_new_tokens=6, eos_token_id=eos, pad_token_id=3)
    new = out.sequences[0, -6:].tolist()
    end = new.index(eos)
    assert end <= 1 and set(new[end + 1:]) <= {3}
    assert (out.scores[0, end + 1:] == 0).all()


def test_end_and_pad_default_to_the_config(pair: Pair) -> None:
    config = pair.ours.config
    explicit = tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=6, num_beams=2,
                                eos_token_id=config.eos_token_id if config.eos_token_id is not None else [],
                                pad_token_id=config.pad_token_id if config.pad_token_id is not None else
                                config.eos_token_id)
    default = tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=6, num_beams=2)
    assert torch.equal(default, explicit)


def test_the_whole_position_table_can_be_used(pair: Pair) -> None:
    prompt = 1 if pair.is_encoder_decoder else pair.input_ids.size(1)
    most = MAX_POSITIONS - prompt + 1  # the last new token is never read back
    out = tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=most, eos_token_id=[])
    assert out.size(1) == MAX_POSITIONS + 1
    with pytest.raises(ValueError, match=rf"prompt length {prompt} \+ max_new_tokens {most + 1} .*max_positions=64"):
        tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, max_new_tokens=most + 1)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args, named", [
    (dict(max_new_tokens=0), "max_new_tokens=0"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences=3 must be <= num_beams=2"),
    (dict(num_return_sequences=2), "num_return_sequences=2 needs num_beams"),
    (dict(num_beams=0), "num_beams=0"),
    (dict(temperature=-1.0, do_sample=True), "temperature=-1.0"),
    (dict(top_k=-3, do_sample=True), "top_k=-3"),
    (dict(top_p=1.2, do_sample=True), "top_p=1.2"),
    (dict(early_stopping="sometimes", num_beams=2), "early_stopping='sometimes'"),
    (dict(eos_token_id=500), "eos_token_id 500"),
    (dict(pad_token_id=-2), "pad_token_id=-2"),
])
def test_bad_arguments_are_named(pair: Pair, args: dict[str, Any], named: str) -> None:
    args = {"max_new_tokens": 4, **args}
    with pytest.raises(ValueError, match=named):
        tformer.generate(pair.ours, pair.input_ids, pair.attention_mask, **args)


def test_a_model_without_a_decoder_cannot_generate() -> None:
    bert = tformer.build_model(tformer.ModelConfig.preset("bert-tiny")).eval()
    with pytest.raises(ValueError, match="BERT cannot generate"):
        tformer.generate(bert, torch.ones(1, 3, dtype=torch.long), max_new_tokens=2)
