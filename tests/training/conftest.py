"""Tiny recipes for the Trainer tests: small text files written per test, tiny presets, a few steps."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from tformer.training import Recipe, load_recipe

WORDS = ("the cat sat on a mat while the dog ran to the old red barn and a bird sang in the tall green tree "
         "so the farmer went home to eat bread with cheese").split()


def write_text(path: Path, lines: int, seed: int, paragraph: int = 4) -> Path:
    """Deterministic English-like text: short lines, a blank line every `paragraph` lines."""
    rng = random.Random(seed)
    rows = []
    for i in range(lines):
        rows.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + ".")
        if (i + 1) % paragraph == 0:
            rows.append("")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


BASE: dict[str, dict[str, Any]] = {
    "causal_lm": {"model": {"preset": "gpt2-tiny"},
                  "data": {"tokenizer": "char", "block_size": 16, "batch_size": 4}},
    "mlm_nsp": {"model": {"preset": "bert-tiny"},
                "data": {"tokenizer": "wordpiece", "vocab_size": 120, "max_length": 24, "batch_size": 4}},
    "mlm": {"model": {"preset": "bert-tiny"},
            "data": {"tokenizer": "wordpiece", "vocab_size": 120, "max_length": 24, "batch_size": 4}},
    "seq2seq": {"model": {"preset": "transformer-tiny"},
                "data": {"corpus": "numbers", "train_pairs": 300, "valid_pairs": 16, "test_pairs": 16,
                         "tokenizer": "char", "batch_size": 8, "max_length": 64}},
    "decoder_seq2seq": {"model": {"preset": "gpt2-tiny"},
                        "data": {"corpus": "numbers", "train_pairs": 300, "valid_pairs": 16, "test_pairs": 16,
                                 "tokenizer": "bpe", "vocab_size": 320, "batch_size": 8, "max_length": 64}},
}


@pytest.fixture
def make_recipe(tmp_path: Path):
    """make_recipe(objective, **sections) -> Recipe writing into tmp_path/run, with small text files as data."""
    books = [write_text(tmp_path / f"book{i}.txt", 60, seed=i) for i in range(3)]

    def make(objective: str, *overrides: str, run: str = "run") -> Recipe:
        base = BASE[objective]
        mapping = {"name": objective, "model": dict(base["model"]), "data": dict(base["data"]),
                   "train": {"objective": objective, "max_steps": 6, "lr": 3e-3, "warmup_steps": 2, "threads": 1,
                             "device": "cpu"},
                   "eval": {"every": 0, "batches": 2},
                   "out": {"dir": str(tmp_path / run), "progress": "none", "tensorboard": False, "plot": False,
                           "log_every": 1}}
        if "text" not in mapping["data"] and mapping["data"].get("corpus") != "numbers":
            mapping["data"]["text"] = [str(b) for b in books]
        return load_recipe(mapping, list(overrides))

    return make


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
