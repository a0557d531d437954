"""Test helper: tiny models with weights far from the near-uniform initialisation."""

from __future__ import annotations

import torch
from torch import nn


def randomize(model: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Every parameter drawn from N(0, scale^2), so attention is not flat and different tokens win at different
    steps; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()
