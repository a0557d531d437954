"""Shared fixtures: offline Hugging Face, tiny reference models saved by `transformers`, the data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .dev_dependency import missing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        missing(f"the shared data folder {DATA_DIR} is absent (CI has it)")
    return DATA_DIR


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter non-trivial values, so parity tests compare more than near-zero init outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(noise + (1.0 if "LayerNorm.weight" in name or "layer_norm.weight" in name
                                     or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0))
    return model
