"""Positional encoding: fixed sinusoids (paper: interleaved sin/cos; Marian: [sin | cos] halves) or learned."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig


def sinusoidal_table(n_positions: int, dim: int, layout: str = "interleaved") -> Tensor:
    """(n_positions, dim) table: PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(same angle).

    "interleaved" puts sin and cos of one frequency side by side (the paper); "halves" puts every sin
    first and every cos after (Marian, Pegasus). The set of numbers is the same; only the order differs.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dimension, got dim={dim}")
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inverse_frequency = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angle = position * inverse_frequency  # (n_positions, dim/2)
    if layout == "interleaved":
        table = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)
    elif layout == "halves":
        table = torch.cat([angle.sin(), angle.cos()], dim=-1)
    else:
        raise ValueError(f"sinusoidal layout {layout!r} is not one of: interleaved, halves")
    return table.float()


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal positional encoding: position ids (...) -> vectors (..., dim). Nothing to train."""

    def __init__(self, n_positions: int, dim: int, layout: str = "interleaved") -> None:
        super().__init__()
        self.n_positions = n_positions
        # Not persistent: it is a formula, not a weight, so checkpoints and weight init never touch it.
        self.register_buffer("table", sinusoidal_table(n_positions, dim, layout), persistent=False)

    def forward(self, position_ids: Tensor) -> Tensor:
        return self.table[position_ids]


class LearnedPositions(nn.Module):
    """Learned absolute positions (GPT, BERT): position ids (...) -> vectors (..., dim)."""

    def __init__(self, n_positions: int, dim: int) -> None:
        super().__init__()
        self.n_positions = n_positions
        self.weight = nn.Parameter(torch.empty(n_positions, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, position_ids: Tensor) -> Tensor:
        return nn.functional.embedding(position_ids, self.weight)


def build_positions(config: ModelConfig) -> LearnedPositions | SinusoidalPositions:
    """The position module a config asks for, covering `max_positions` positions of `d_model` dimensions."""
    if config.positions == "sinusoidal":
        return SinusoidalPositions(config.max_positions, config.d_model, config.sinusoidal_layout)
    return LearnedPositions(config.max_positions, config.d_model)
