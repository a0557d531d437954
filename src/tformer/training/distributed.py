"""Data parallelism under `torchrun`: process group, DDP or FSDP2 wrapping, each process's share of a batch.

`torchrun --nproc-per-node N -m tformer.cli train RECIPE` sets RANK / WORLD_SIZE / LOCAL_RANK; the same
Trainer then runs in every process. Backend: nccl on CUDA, gloo on CPU (what the tests use). Rank 0 alone
logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class Distributed:
    """Where this process stands: rank, world size, device; `enabled` when there is more than one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sum each tensor over all processes (one collective for all of them); returns float64 copies."""
        keys = sorted(tensors)
        flat = torch.stack([tensors[k].detach().to(self.device, torch.float64).reshape(()) for k in keys])
        if self.enabled:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        return dict(zip(keys, flat.cpu().unbind(), strict=True))

    def gather_to_main(self, value: Any) -> list[Any]:
        """Every process's `value` (any picklable object), in rank order, on rank 0; [] on the others."""
        if not self.enabled:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered or []

    def close(self) -> None:
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """auto -> cuda:LOCAL_RANK when CUDA is there, else cpu; otherwise the named device (checked; errors name
    `option`)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option}={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option}={name!r} but this machine has no CUDA device; use {option}=cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup(device_name: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (else a single process); pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size == 1:
        return Distributed(device=device)
    started = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    return Distributed(rank, world_size, local_rank, device, started)


def shard(batch: dict[str, Tensor], rank: int, world_size: int) -> dict[str, Tensor]:
    """This process's rows of a global batch: contiguous, nearly equal parts (tensor_split along dim 0).

    A batch with fewer rows than processes (the last batch of an epoch, a token-budget batch of long rows) leaves
    some processes an empty share; they still run forward and backward, so DDP / FSDP collectives stay matched,
    and add nothing to the loss, whose counts are summed over all processes.
    """
    if world_size == 1:
        return batch
    return {k: v.tensor_split(world_size)[rank] for k, v in batch.items()}


def wrap(model: nn.Module, strategy: str, env: Distributed) -> nn.Module:
    """DDP (a replica per process, gradients averaged) or FSDP2 (`fully_shard` per block, then the root)."""
    if not env.enabled:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if strategy == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # torch 2.4 / 2.5 keep it under _composable
            from torch.distributed._composable.fsdp import fully_shard
        for module in model.modules():
            if type(module).__name__ in ("EncoderBlock", "DecoderBlock"):
                fully_shard(module)
        fully_shard(model)
        return model
    raise ValueError(f"train.distributed={strategy!r} is not ddp or fsdp")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers (FSDP2 shards in place, so it needs none)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner
