"""Validation loss by position in the window: does the far context lower the loss?

Liu et al. 2018 (Table 4) show the T-DMCA's perplexity falling as its input grows. The per-position view asks the
same of one trained causal LM: cut the validation tokens into non-overlapping windows of `window` tokens, score
every next-token prediction, and average the loss of the predictions made at positions [a, b) of the window
(position p has seen p + 1 tokens of context). If the loss at 2k-4k is below the loss at 0-512, the model uses
context further back than 512 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bucket_edges(window: int, first: int = 512) -> list[int]:
    """0, first, then 4 * first doubling (2k, 4k, 8k, ... for first=512), ending at `window`: [0, 512, 2048, 4096]
    for 4,096."""
    if window < 1 or first < 1:
        raise ValueError(f"window={window} and first={first} must be at least 1")
    edges = [0, min(first, window)]
    step = 4 * first
    while edges[-1] < window:
        edges.append(min(step, window))
        step *= 2
    return edges


@dataclass
class PositionLoss:
    """Mean next-token loss per window position (window,), and per bucket [edges[i], edges[i + 1])."""

    window: int
    windows: int
    per_position: Tensor  # (window,) mean loss of the prediction made at each position
    edges: list[int]

    @property
    def buckets(self) -> list[tuple[int, int, float]]:
        """(start, end, mean loss) of every bucket; each position counts once per window."""
        return [(a, b, self.per_position[a:b].mean().item()) for a, b in pairwise(self.edges)]

    @property
    def mean(self) -> float:
        return self.per_position.mean().item()

    def table(self, name: str = "loss") -> str:
        """A markdown table: bucket, predictions, mean loss, perplexity."""
        rows = [f"| positions | predictions | {name} | perplexity |", "|---|---:|---:|---:|"]
        for a, b, loss in self.buckets:
            rows.append(f"| {a:,}-{b:,} | {(b - a) * self.windows:,} | {loss:.4f} | {math.exp(loss):.2f} |")
        rows.append(f"| all | {self.window * self.windows:,} | {self.mean:.4f} | {math.exp(self.mean):.2f} |")
        return "\n".join(rows)


@torch.no_grad()
def position_losses(model: nn.Module, tokens: Tensor, window: int, *, batch_size: int = 1,
                    max_windows: int | None = None, edges: list[int] | None = None) -> PositionLoss:
    """The loss of a causal LM on `tokens` (1-D ids) by position, over non-overlapping windows of `window`.

    Window w reads tokens[w * window : (w + 1) * window] and predicts each next token (its targets run one
    token further). `max_windows` scores only the first windows (None: every whole window of the tokens).
    """
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D tensor of ids, got shape {tuple(tokens.shape)}")
    if window < 1 or batch_size < 1:
        raise ValueError(f"window={window} and batch_size={batch_size} must be at least 1")
    available = (tokens.numel() - 1) // window
    if available < 1:
        raise ValueError(f"{tokens.numel()} tokens hold no window of {window} + 1; use a smaller window or more "
                         f"validation text")
    count = available if max_windows is None else min(available, max_windows)
    if count < 1:
        raise ValueError(f"max_windows={max_windows} must be at least 1")
    edges = edges or bucket_edges(window)
    if edges[0] != 0 or edges[-1] != window or any(a >= b for a, b in pairwise(edges)):
        raise ValueError(f"edges={edges} must rise from 0 to the window {window}, e.g. {bucket_edges(window)}")
    inputs = tokens[: count * window].view(count, window)
    targets = tokens[1: count * window + 1].view(count, window)
    device = next(model.parameters()).device
    total = torch.zeros(window, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for start in range(0, count, batch_size):
        ids = inputs[start:start + batch_size].to(device)
        logits = model(ids).logits.float()
        loss = F.cross_entropy(logits.transpose(1, 2), targets[start:start + batch_size].to(device),
                               reduction="none")
        total += loss.sum(0).double().cpu()
    model.train(was_training)
    return PositionLoss(window, count, (total / count).float(), edges)
