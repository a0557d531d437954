"""Parallelism: the training-step time of RNNsearch and of the Transformer against sequence length.

A step is forward + loss (the model's own, labels given) + backward + AdamW step (tformer's build_optimizer) +
zero_grad, on random tokens, source and target both `length` tokens long, batch = max(1, tokens // length) so
every length trains on about the same number of target tokens. Dropout is 0 for both. At each length the two
models take their steps in turns (which goes first alternating), after `warmup` untimed steps each, so a slow
phase of a shared machine hits both; the median of the `repeats` timed steps is kept, and every step is logged.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rnn_vs_transformer_models import build
from tformer.training.optim import build_optimizer


@dataclass
class SpeedRow:
    """One (model, length) measurement: median step seconds and target tokens per second."""

    family: str
    length: int
    batch: int
    seconds: float | None  # None: the step did not run (out of memory); `error` says why
    tokens_per_s: float | None
    sequential_steps: int  # per recurrent layer: n (one per position); per attention layer: 1
    error: str = ""
    steps: list[float] = field(default_factory=list)  # every timed step, seconds

    def as_dict(self) -> dict:
        return asdict(self)


def _batch(vocab_size: int, batch: int, length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    source = torch.randint(3, vocab_size, (batch, length), generator=generator)
    target = torch.randint(3, vocab_size, (batch, length), generator=generator)
    return {"input_ids": source, "attention_mask": torch.ones_like(source), "labels": target}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure_length(models: dict[str, nn.Module], vocab_size: int, length: int, tokens: int, warmup: int,
                   repeats: int, say) -> list[SpeedRow]:  # noqa: ANN001
    """Every model at one length: `warmup` untimed steps each, then `repeats` rounds of one timed step per model,
    the model that goes first alternating, so a slow phase of a shared machine hits both."""
    batch_size = max(1, tokens // length)
    batch = _batch(vocab_size, batch_size, length, torch.Generator().manual_seed(length))
    optimizers = {f: build_optimizer(m, lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-9)
                  for f, m in models.items()}
    seconds: dict[str, list[float]] = {f: [] for f in models}
    errors: dict[str, str] = {}
    order = list(models)
    for step in range(warmup + repeats):
        for family in order if step % 2 == 0 else order[::-1]:
            if family in errors:
                continue
            try:
                elapsed = _step(models[family], optimizers[family], batch)
            except RuntimeError as error:  # out of memory at long lengths: reported, not fatal
                errors[family] = str(error).splitlines()[0][:200]
                continue
            if step >= warmup:
                seconds[family].append(elapsed)
    del optimizers
    gc.collect()
    return [_row(f, length, batch_size, seconds[f], errors.get(f, ""), say) for f in models]


def _row(family: str, length: int, batch_size: int, seconds: list[float], error: str, say) -> SpeedRow:  # noqa: ANN001
    sequential = length if family == "rnn" else 1
    if error or not seconds:
        say(f"  {family:<11} length {length:>5}: failed ({error})")
        return SpeedRow(family, length, batch_size, None, None, sequential, error or "no step ran")
    median = statistics.median(seconds)
    row = SpeedRow(family, length, batch_size, median, batch_size * length / median, sequential, steps=seconds)
    say(f"  {family:<11} length {length:>5} x batch {batch_size:>3}: {median:8.3f} s/step (steps: "
        f"{', '.join(f'{s:.3f}' for s in seconds)}), {row.tokens_per_s:9.0f} target tokens/s")
    return row


def run_speed(families: list[str], size: str, vocab_size: int, lengths: list[int], transformer_only: list[int],
              tokens: int, warmup: int, repeats: int, say) -> list[SpeedRow]:  # noqa: ANN001
    """Every family at every length (the Transformer also at `transformer_only`), interleaved step by step."""
    longest = max([*lengths, *transformer_only])
    models = {family: build(family, size, vocab_size, max_positions=longest).train() for family in families}
    rows = []
    for length in sorted(set(lengths) | set(transformer_only)):
        here = {f: m for f, m in models.items() if length in lengths or f == "transformer"}
        rows += measure_length(here, vocab_size, length, tokens, warmup, repeats, say)
    return rows
