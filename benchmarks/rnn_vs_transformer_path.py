"""Path length: reproduce the token that stood d positions before the end of the source, d from 4 to 512.

The source is x_0 ... x_{L-1} (random content tokens) and [EOS]; the target is x_{L-d} (the token d positions
before [EOS]) and [EOS]. L = d + r with r drawn per batch from [0, jitter], so the answer's absolute position moves
and only its distance d from the end is fixed. For every d each model starts fresh and trains on the same batches
for the same number of steps of the same source tokens (so a longer d has fewer rows per step: the compute per d
is the same, the examples are not) with the same optimizer, and is scored on fresh examples (accuracy of the first
target token, teacher-forced, which is what greedy decoding emits first).

Why this task, for a model that has attention: RNNsearch's decoder attends over all encoder states, so copying a
token that the decoder can find by its content would be a constant-length path for it too. Here nothing marks the
answer but its distance from the end: the encoder state at the answer must know "the end is d positions after
me" (the backward GRU carries a count from [EOS] over d steps), or the state at [EOS] must still hold x_{L-d}
(the forward GRU carries it over d steps); the decoder's first state, made from the backward GRU's last state,
has run over all L >= d positions. Encoder positions meet only through the recurrence, so every route from the
answer to the end is at least d recurrent steps long. The Transformer's encoder joins any two positions in one
self-attention step (its sinusoidal positions make the offset d a fixed linear map), so its path is 1 whatever d
is. The task therefore measures how accuracy falls with the recurrent path length d, beside a model whose path
does not grow; it does not measure attention's own reach, which both models have.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from rnn_vs_transformer_models import build
from tformer.training.optim import build_optimizer, build_scheduler

PAD, START, EOS, FIRST_CONTENT = 0, 1, 2, 3


@dataclass(frozen=True)
class PathTask:
    """The task's sizes: the distances d, the content tokens, the length jitter r in [0, jitter]."""

    distances: tuple[int, ...]
    content_tokens: int = 16
    jitter: int = 16

    @property
    def vocab_size(self) -> int:
        return FIRST_CONTENT + self.content_tokens

    @property
    def longest_source(self) -> int:
        return max(self.distances) + self.jitter + 1


def make_batch(task: PathTask, d: int, rows: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`rows` examples at distance d: input_ids (rows, L + 1) = x, [EOS]; labels (rows, 2) = x_{L-d}, [EOS]."""
    length = d + int(torch.randint(0, task.jitter + 1, (1,), generator=generator))
    content = torch.randint(FIRST_CONTENT, FIRST_CONTENT + task.content_tokens, (rows, length), generator=generator)
    source = torch.cat([content, torch.full((rows, 1), EOS)], dim=1)
    labels = torch.stack([content[:, length - d], torch.full((rows,), EOS)], dim=1)
    return {"input_ids": source, "attention_mask": torch.ones_like(source), "labels": labels}


@dataclass(frozen=True)
class PathTraining:
    """How both models train at each d: steps, source tokens per step (rows = tokens // source length, at least 2),
    AdamW with warmup and cosine decay."""

    steps: int
    tokens: int = 2048
    lr: float = 3e-3  # of 1e-3 and 3e-3 the better for a BiGRU here; the Transformer learned with neither in 600 steps
    eval_rows: int = 256
    seed: int = 0

    def rows(self, task: PathTask, d: int) -> int:
        """Rows per step at distance d: about `tokens` source tokens (the mean source is d + jitter / 2 + 1 long)."""
        return max(2, self.tokens // (d + task.jitter // 2 + 1))


def train_at(family: str, size: str, task: PathTask, training: PathTraining, d: int) -> dict:
    """A fresh model of `family` trained at distance d; its accuracy on fresh examples."""
    model = build(family, size, task.vocab_size, max_positions=task.longest_source, seed=training.seed).train()
    optimizer = build_optimizer(model, lr=training.lr, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-9)
    scheduler = build_scheduler(optimizer, "cosine", max_steps=training.steps,
                                warmup_steps=max(1, training.steps // 10), lr=training.lr, min_lr=training.lr / 10)
    generator = torch.Generator().manual_seed(training.seed + d)
    losses, began = [], time.perf_counter()
    for _ in range(training.steps):
        loss = model(**make_batch(task, d, training.rows(task, d), generator)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - began
    tail = losses[-max(1, len(losses) // 10):]
    return {"accuracy": score(model, task, training, d), "train_seconds": seconds,
            "final_loss": sum(tail) / len(tail), "parameters": sum(p.numel() for p in model.parameters())}


def train_and_score(family: str, size: str, task: PathTask, training: PathTraining, threads: int) -> dict:
    """Every d in turn (in this process, `threads` torch threads): accuracy, training seconds and loss per d."""
    torch.set_num_threads(threads)
    per_d = {}
    for d in task.distances:
        per_d[d] = train_at(family, size, task, training, d)
        print(f"  path {family:<11} d {d:>4}: accuracy {100 * per_d[d]['accuracy']:5.1f} %, final loss "
              f"{per_d[d]['final_loss']:.3f}, {per_d[d]['train_seconds']:.0f} s", file=sys.stderr, flush=True)
    return {"family": family, "accuracy": {d: r["accuracy"] for d, r in per_d.items()},
            "train_seconds": sum(r["train_seconds"] for r in per_d.values()),
            "seconds_per_d": {d: r["train_seconds"] for d, r in per_d.items()},
            "loss_per_d": {d: r["final_loss"] for d, r in per_d.items()},
            "parameters": per_d[task.distances[0]]["parameters"], "steps": training.steps}


@torch.no_grad()
def score(model: torch.nn.Module, task: PathTask, training: PathTraining, d: int) -> float:
    """Accuracy of the first target token at distance d, on `eval_rows` fresh examples (batches of up to 64)."""
    model.eval()
    generator = torch.Generator().manual_seed(10_000 + training.seed + d)  # never the training stream
    right = total = 0
    while total < training.eval_rows:
        rows = min(64, training.eval_rows - total)
        batch = make_batch(task, d, rows, generator)
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
        right += int((logits[:, 0].argmax(-1) == batch["labels"][:, 0]).sum())
        total += rows
    model.train()
    return right / total
