"""AdamW with the usual decay groups, and learning-rate schedules (warmup + cosine / linear, the paper's "Noam")."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from tformer.layers.positions import LearnedPositions


def decay_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
    """Two AdamW groups: matrices of linear layers decay; biases, norms and embeddings do not (as GPT-2 / BERT).

    `decay_embeddings=True` decays token and position tables too, as nanoGPT does (every tensor of 2+ dims).
    Tied parameters appear once (named_parameters() skips duplicates).
    """
    norms = (nn.LayerNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
    no_decay_modules = norms if decay_embeddings else (*norms, nn.Embedding, LearnedPositions)
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, no_decay_modules):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, rest = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in no_decay or parameter.ndim < 2 or name.endswith("bias"):
            rest.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float, decay_embeddings: bool = False, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over `decay_groups`; the fused kernel when `fused` (None: on CUDA)."""
    if fused is None:
        fused = any(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(decay_groups(model, weight_decay, decay_embeddings), lr=lr, betas=betas, eps=eps,
                             **({"fused": True} if fused else {}))


def lr_multiplier(schedule: str, *, max_steps: int, warmup_steps: int, lr: float,
                  min_lr: float = 0.0) -> Callable[[int], float]:
    """step -> factor on the peak lr, for LambdaLR. `step` counts optimizer steps taken so far (0 at the start).

    As nanoGPT: warmup (step + 1) / (warmup + 1) for the first `warmup_steps` steps; then cosine or linear from
    lr at step `warmup_steps` towards min_lr, which it reaches at `max_steps` (one past the last step, so every
    step trains). noam: min(s / warmup, sqrt(warmup / s)) with s = step + 1, the paper's
    d_model^-0.5 * min(s^-0.5, s * warmup^-1.5) up to the constant factor that `lr` sets.
    """
    floor = min_lr / lr

    def factor(step: int) -> float:
        if schedule == "noam":
            s = step + 1
            return min(s / warmup_steps, math.sqrt(warmup_steps / s))
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        if schedule == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if schedule == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        raise ValueError(f"unknown schedule {schedule!r}; choose cosine, linear, noam or constant")

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, max_steps: int, warmup_steps: int,
                    lr: float, min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(schedule, max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr))
