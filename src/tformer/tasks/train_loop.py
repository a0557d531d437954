"""The fine-tuning loop: shuffled (optionally length-grouped) batches, AdamW steps, progress lines, and a clean stop.

Ctrl-C or SIGTERM (`tformer.interrupt.stop_requests`) lets the step in progress finish, then the loop returns with
`LoopResult.signal_name` set; the caller keeps the weights so far and raises `Interrupted`. A second signal stops
at once (KeyboardInterrupt).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tformer.interrupt import stop_requests
from tformer.models import TaskModel
from tformer.tasks.encoding import TaskEncoder
from tformer.tasks.options import FinetuneOptions
from tformer.training.progress import RunLog


@dataclass
class LoopResult:
    """Where the loop stopped: optimizer `step`s done, training items `seen`, seconds, and the signal, if any."""

    step: int
    seen: int
    seconds: float
    signal_name: str | None = None


def length_grouped_order(order: list[int], sizes: Sequence[int], batch_size: int,
                         group_batches: int = 50) -> list[int]:
    """`order` (a random permutation) regrouped so each batch holds items of similar size, as Hugging Face's
    LengthGroupedSampler: cut into groups of `group_batches` batches, sort each group longest first, and put the
    group holding the longest item first (a run that runs out of memory does so at once)."""
    group = group_batches * batch_size
    groups = [sorted(order[i:i + group], key=lambda k: -sizes[k]) for i in range(0, len(order), group)]
    longest = max(range(len(groups)), key=lambda g: sizes[groups[g][0]], default=0)
    if groups:
        groups[0], groups[longest] = groups[longest], groups[0]
    return [index for members in groups for index in members]


class _Window:
    """Loss sums since the last progress line (the task's loss, GPT-1's auxiliary LM loss, examples, time)."""

    def __init__(self) -> None:
        self.loss, self.lm, self.count, self.began = 0.0, 0.0, 0, time.perf_counter()

    def add(self, output: Any, examples: int) -> None:
        self.loss += output.loss.item() * examples
        if output.lm_loss is not None:  # GPT-1's auxiliary LM loss, shown apart from the task's own
            self.lm += output.lm_loss.item() * examples
        self.count += examples

    def shown(self, lm_weight: float, lr: float) -> dict[str, float]:
        shown = {"loss": self.loss / self.count}
        if self.lm:
            lm = self.lm / self.count
            shown |= {"task_loss": shown["loss"] - lm_weight * lm, "lm_loss": lm}
        rate = round(self.count / max(time.perf_counter() - self.began, 1e-9), 1)
        return shown | {"lr": lr, "examples/s": rate}


def _step(model: TaskModel, batch: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any,
          opts: FinetuneOptions, step: int) -> Any:
    output = model(**batch)
    if not torch.isfinite(output.loss):
        raise ValueError(f"the loss became {output.loss.item()} at step {step + 1}; lower the learning rate "
                         f"(--lr, now {opts.lr:g})")
    output.loss.backward()
    if opts.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return output


def train_steps(model: TaskModel, encoder: TaskEncoder, items: Sequence[Any], opts: FinetuneOptions, steps: int,
                optimizer: torch.optim.Optimizer, scheduler: Any, log: RunLog) -> LoopResult:
    """Run `steps` optimizer steps over `items` (epochs of a seeded shuffle), logging every `opts.log_every`; stop
    after the current step when SIGINT or SIGTERM arrives."""
    assert opts.batch_size is not None
    generator = torch.Generator().manual_seed(opts.seed)
    sizes = [encoder.size(item) for item in items] if opts.group_by_length else []
    step, seen, window, began = 0, 0, _Window(), time.perf_counter()
    model.train()
    with stop_requests() as stop:
        while step < steps and not stop.requested():
            order = torch.randperm(len(items), generator=generator).tolist()
            if opts.group_by_length:
                order = length_grouped_order(order, sizes, opts.batch_size)
            for start in range(0, len(order), opts.batch_size):
                chunk = [items[i] for i in order[start:start + opts.batch_size]]
                output = _step(model, encoder.batch(chunk), optimizer, scheduler, opts, step)
                step, seen = step + 1, seen + len(chunk)
                window.add(output, len(chunk))
                if step % opts.log_every == 0 or step == steps:
                    log.train(step, window.shown(model.config.lm_weight, scheduler.get_last_lr()[0]))
                    window = _Window()
                if step >= steps or stop.requested():
                    break
    return LoopResult(step, seen, time.perf_counter() - began, stop.signal_name)
