"""Evaluation: held-out loss and perplexity, and for translation decoded outputs, BLEU and exact match."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tformer.generation import generate
from tformer.tokenization import Tokenizer
from tformer.training.distributed import Distributed, shard
from tformer.training.wait_bar import wait_bar


@torch.no_grad()
def evaluate_loss(model: nn.Module, objective: Any, batches: Sequence[dict[str, Tensor]], *,
                  env: Distributed, autocast: torch.autocast | None = None) -> dict[str, float]:
    """The objective's metrics over fixed batches (each process scores its share; the sums are combined).

    `objective` is an `objectives.base.Objective` (its counts, loss and summary)."""
    was_training = model.training
    model.eval()
    totals: dict[str, Tensor] = {}
    for batch in batches:
        part = {k: v.to(env.device, non_blocking=True) for k, v in shard(batch, env.rank, env.world_size).items()}
        ones = {k: torch.ones((), device=env.device) for k in objective.counts(part)}  # sums, not means
        with autocast if autocast is not None else torch.autocast(env.device.type, enabled=False):
            _, sums = objective.loss(model, part, ones)
        for key, value in sums.items():
            totals[key] = totals.get(key, torch.zeros((), dtype=torch.float64)) + value.detach().double().cpu()
    model.train(was_training)
    reduced = {k: float(v) for k, v in env.all_reduce_sum(totals).items()} if totals else {}
    return objective.summary(reduced)


def _source_batch(tokenizer: Tokenizer, sources: Sequence[str], decoder_only: bool) -> tuple[Tensor, Tensor]:
    """Encoder-decoder: source [EOS], right-padded. T-D: source [SEP], left-padded, so new tokens follow directly."""
    eos, pad, sep = (tokenizer.token_to_id(t) for t in ("[EOS]", "[PAD]", "[SEP]"))
    rows = [[*tokenizer.encode(s, add_special_tokens=False), sep if decoder_only else eos] for s in sources]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for r, row in enumerate(rows):
        span = slice(width - len(row), width) if decoder_only else slice(0, len(row))
        input_ids[r, span], mask[r, span] = torch.tensor(row), 1
    return input_ids, mask


def _decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    eos = tokenizer.token_to_id("[EOS]")
    return tokenizer.decode(ids[:ids.index(eos)] if eos in ids else ids)


@torch.no_grad()
def translate(model: nn.Module, tokenizer: Tokenizer, sources: Sequence[str], *, decoder_only: bool,
              device: torch.device, batch_size: int = 256, num_beams: int = 1, max_new_tokens: int = 64,
              length_penalty: float = 1.0) -> list[str]:
    """Decode each source sentence with the model (beam search when num_beams > 1); returns the target texts.

    Encoder-decoder: source [EOS] in, decoder from its start token. T-D (decoder_only): the prompt is
    source [SEP], left-padded in a batch, and the text after it is the translation.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths share a batch
    results: list[str] = [""] * len(sources)
    eos, pad = tokenizer.token_to_id("[EOS]"), tokenizer.token_to_id("[PAD]")
    starts = range(0, len(order), batch_size)
    beams = f", {num_beams} beams" if num_beams > 1 else ""
    for begin in wait_bar(starts, total=len(starts), desc=f"decoding {len(sources):,} sentences{beams}"):
        chunk = order[begin:begin + batch_size]
        input_ids, mask = _source_batch(tokenizer, [sources[i] for i in chunk], decoder_only)
        out = generate(model, input_ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                       num_beams=num_beams, length_penalty=length_penalty, early_stopping=num_beams > 1,
                       eos_token_id=eos, pad_token_id=pad)
        new = out[:, input_ids.shape[1]:] if decoder_only else out
        for i, ids in zip(chunk, new.tolist(), strict=True):
            results[i] = _decode(tokenizer, ids)
    model.train(was_training)
    return results


@torch.no_grad()
def n_best(model: nn.Module, tokenizer: Tokenizer, source: str, *, decoder_only: bool, device: torch.device,
           n: int = 4, max_new_tokens: int = 64, length_penalty: float = 1.0) -> list[tuple[str, float]]:
    """The n best translations of one sentence by beam search (n beams), with their length-normalised scores."""
    was_training = model.training
    model.eval()
    input_ids, mask = _source_batch(tokenizer, [source], decoder_only)
    out = generate(model, input_ids.to(device), mask.to(device), max_new_tokens=max_new_tokens, num_beams=n,
                   num_return_sequences=n, length_penalty=length_penalty, early_stopping=True,
                   eos_token_id=tokenizer.token_to_id("[EOS]"), pad_token_id=tokenizer.token_to_id("[PAD]"),
                   return_scores=True)
    model.train(was_training)
    new = out.sequences[:, input_ids.shape[1]:] if decoder_only else out.sequences
    return [(_decode(tokenizer, ids), float(score)) for ids, score in zip(new.tolist(), out.scores.tolist(),
                                                                          strict=True)]


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU with sacrebleu, 0-100. tokenize: "13a" (sacrebleu's default, words) or "char" (characters:
    the meaningful choice when targets are single words, such as German numbers, where word 4-grams never occur).
    """
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference (surrounding whitespace ignored)."""
    if not references:
        return math.nan
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True)) / len(references)
