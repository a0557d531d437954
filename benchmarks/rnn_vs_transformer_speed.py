"""Parallelism: the training-step time of RNNsearch and of the Transformer against sequence length.

A step is forward + loss (the model's own, labels given) + backward + AdamW step (tformer's build_optimizer) +
zero_grad, on random tokens, source and target both `length` tokens long, batch = max(1, tokens // length) so
every length trains on about the same number of target tokens. Dropout is 0 for both. The lengths alternate
between the two models and a step is timed after `warmup` untimed ones; the median of `repeats` is kept.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass

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


def time_steps(model: nn.Module, batch: dict[str, torch.Tensor], warmup: int, repeats: int) -> list[float]:
    """Seconds of `repeats` timed training steps after `warmup` untimed ones."""
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(warmup):
        _step(model, optimizer, batch)
    return [_step(model, optimizer, batch) for _ in range(repeats)]


def measure_row(family: str, model: nn.Module, vocab_size: int, length: int, tokens: int, warmup: int,
                repeats: int, say) -> SpeedRow:  # noqa: ANN001
    batch_size = max(1, tokens // length)
    sequential = length if family == "rnn" else 1
    batch = _batch(vocab_size, batch_size, length, torch.Generator().manual_seed(length))
    try:
        seconds = statistics.median(time_steps(model, batch, warmup, repeats))
    except RuntimeError as error:  # out of memory at long lengths: reported, not fatal
        say(f"  {family:<11} length {length:>5}: failed ({str(error).splitlines()[0][:120]})")
        return SpeedRow(family, length, batch_size, None, None, sequential, str(error).splitlines()[0][:200])
    finally:
        gc.collect()
    row = SpeedRow(family, length, batch_size, seconds, batch_size * length / seconds, sequential)
    say(f"  {family:<11} length {length:>5} x batch {batch_size:>3}: {seconds:8.3f} s/step, "
        f"{row.tokens_per_s:9.0f} target tokens/s")
    return row


def run_speed(families: list[str], size: str, vocab_size: int, lengths: list[int], transformer_only: list[int],
              tokens: int, warmup: int, repeats: int, say) -> list[SpeedRow]:  # noqa: ANN001
    """Every family at every length (the Transformer also at `transformer_only`), alternating per length."""
    longest = max([*lengths, *transformer_only])
    models = {family: build(family, size, vocab_size, max_positions=longest).train() for family in families}
    rows = []
    for i, length in enumerate(sorted(set(lengths) | set(transformer_only))):
        for family in families if i % 2 == 0 else families[::-1]:
            if length in lengths or family == "transformer":
                rows.append(measure_row(family, models[family], vocab_size, length, tokens, warmup, repeats, say))
    return rows
