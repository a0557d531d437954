"""Evaluation: held-out loss and perplexity, and for translation decoded outputs, BLEU and exact match."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tformer.generation import generate
from tformer.tokenization import Tokenizer
from tformer.training.distributed import Distributed, shard
from tformer.training.objectives import Objective


@torch.no_grad()
def evaluate_loss(model: nn.Module, objective: Objective, batches: Sequence[dict[str, Tensor]], *,
                  env: Distributed, autocast: torch.autocast | None = None) -> dict[str, float]:
    """The objective's metrics over fixed batches (each process scores its share; the sums are combined)."""
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
    eos, pad, sep = (tokenizer.token_to_id(t) for t in ("[EOS]", "[PAD]", "[SEP]"))
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths share a batch
    results: list[str] = [""] * len(sources)
    for begin in range(0, len(order), batch_size):
        chunk = order[begin:begin + batch_size]
        encoded = [tokenizer.encode(sources[i], add_special_tokens=False) for i in chunk]
        rows = [[*ids, sep] if decoder_only else [*ids, eos] for ids in encoded]
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for r, row in enumerate(rows):
            if decoder_only:  # left padding: the new tokens follow every prompt directly
                input_ids[r, width - len(row):], mask[r, width - len(row):] = torch.tensor(row), 1
            else:
                input_ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
        out = generate(model, input_ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                       num_beams=num_beams, length_penalty=length_penalty, early_stopping=num_beams > 1,
                       eos_token_id=eos, pad_token_id=pad)
        new = out[:, width:] if decoder_only else out
        for i, ids in zip(chunk, new.tolist(), strict=True):
            results[i] = tokenizer.decode(ids[:ids.index(eos)] if eos in ids else ids)
    model.train(was_training)
    return results


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, its default 13a tokenisation), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference (surrounding whitespace ignored)."""
    if not references:
        return math.nan
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True)) / len(references)
