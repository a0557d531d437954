"""Validation loss of a trained causal-LM run, three ways: the whole val split, and the spread of nanoGPT's
20-random-batch estimate.

nanoGPT reports `estimate_loss()`: the mean loss of `eval_iters` batches of random windows, drawn fresh each
time. With 20 batches of 12 x 64 characters that number is noisy, so one run's figure says little about the model.
This script scores every position of the val split once (non-overlapping windows of block_size) and repeats the
20-batch estimate many times on the same model to show its spread.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lm_val_loss.py runs/gpt-shakespeare-char
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import tformer


def whole_split_loss(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, batch: int = 256) -> float:
    """Mean next-token loss over every target of `tokens`, in non-overlapping windows of `block_size`."""
    windows = (len(tokens) - 1) // block_size
    inputs = tokens[: windows * block_size].view(windows, block_size)
    targets = tokens[1: windows * block_size + 1].view(windows, block_size)
    total = 0.0
    for start in range(0, windows, batch):
        logits = model(inputs[start:start + batch]).logits
        total += F.cross_entropy(logits.flatten(0, 1), targets[start:start + batch].flatten(), reduction="sum").item()
    return total / (windows * block_size)


def random_batch_estimates(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int,
                           batches: int, draws: int, seed: int) -> np.ndarray:
    """`draws` repetitions of nanoGPT's estimate: the mean loss of `batches` batches of random windows."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(block_size + 1)
    estimates = []
    for _ in range(draws):
        losses = []
        for _ in range(batches):
            starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
            window = tokens[starts[:, None] + offsets]
            logits = model(window[:, :-1]).logits
            losses.append(F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten()).item())
        estimates.append(sum(losses) / batches)
    return np.array(estimates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a `tformer train` run folder (with final/ and data/val.bin)")
    parser.add_argument("--batches", type=int, default=20, help="batches per estimate (nanoGPT's eval_iters)")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--draws", type=int, default=50, help="how many estimates to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", type=float, default=1.88, help="report the share of estimates at or below this "
                        "(default: nanoGPT's 1.88)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = tformer.from_pretrained(args.run / "final").eval()
    meta = json.loads((args.run / "data" / "meta.json").read_text())
    tokens = torch.from_numpy(np.fromfile(args.run / "data" / "val.bin", dtype=meta["dtype"]).astype(np.int64))
    block_size = model.config.max_positions
    with torch.no_grad():
        whole = whole_split_loss(model, tokens, block_size)
        estimates = random_batch_estimates(model, tokens, block_size, args.batch_size, args.batches, args.draws,
                                           args.seed)
    print(f"{args.run}: whole val split ({len(tokens) - 1:,} tokens, windows of {block_size}): {whole:.4f}")
    print(f"{args.draws} estimates of {args.batches} random batches of {args.batch_size}: mean {estimates.mean():.4f}, "
          f"sd {estimates.std():.4f}, min {estimates.min():.4f}, max {estimates.max():.4f}; "
          f"{(estimates <= args.target).mean():.0%} at or below {args.target}")


if __name__ == "__main__":
    main()
