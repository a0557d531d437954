"""Training checkpoints: a model folder plus everything needed to continue exactly, written atomically.

RUN/checkpoints/step-00000100/
    config.json, model.safetensors   the weights in Hugging Face layout (`tformer.from_pretrained` reads it)
    tokenizer.json                   the run's tokenizer
    recipe.yaml                      the full run config
    trainer.pt                       optimizer, scheduler, fp16 gradient scaler, data position, step counters
                                     (torch.save of tensors and plain values only: loads with weights_only=True)
    rng-rank0.pt ...                 each process's torch / CUDA / numpy / Python RNG state
    state.json                       step and last metrics, for people

A checkpoint is written into a hidden temporary folder and renamed into place when complete, so a kill at
any moment leaves the previous checkpoints untouched; `latest_checkpoint` only ever sees complete ones.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tformer.interop.huggingface import load_weights, save_pretrained
from tformer.tokenization import Tokenizer
from tformer.training.distributed import Distributed

STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / "trainer.pt").is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": [name, keys.tolist(), int(position), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _full_state(model: nn.Module, optimizer: torch.optim.Optimizer, env: Distributed) -> tuple[dict, dict]:
    """Full (gathered) model and optimizer state dicts; under FSDP/DDP a collective every process must call."""
    if not env.enabled:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options))


def save_model_folder(inner: nn.Module, path: Path, state_dict: dict[str, Any] | None = None) -> None:
    """save_pretrained without its "transformers will compute differently" warning (said once per run instead)."""
    if state_dict is not None:
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_pretrained(inner, path, state_dict=state_dict)


def save_checkpoint(run_dir: Path, step: int, *, model: nn.Module, inner: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, data_state: dict[str, Any],
                    counters: dict[str, Any], tokenizer: Tokenizer | None, recipe_yaml: str,
                    metrics: dict[str, float], env: Distributed, keep: int = 2,
                    before_rename: Any = None, rng: dict[str, Any] | None = None,
                    scaler: dict[str, Any] | None = None) -> Path:
    """Write checkpoint `step` of the run (every process calls this); returns its folder.

    `model` is what trains (maybe DDP / FSDP-wrapped), `inner` the TransformerModel with the config.
    `rng` is this process's RNG state at the step (default: now); `scaler` the fp16 gradient scaler's state dict
    (None without one). `before_rename` is called after the files are
    written and before the rename (tests use it to simulate a kill). A failed write (a full or read-only disk)
    removes the half-written folder and raises an OSError naming the checkpoint; the earlier ones stay.
    """
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    model_state, optimizer_state = _full_state(model, optimizer, env)
    rng_states = env.gather_to_main(rng or rng_state())  # rank 0 alone writes, each process's RNG state included
    if env.is_main:
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            for rank, state in enumerate(rng_states):
                torch.save(state, tmp / f"rng-rank{rank}.pt")
            save_model_folder(inner, tmp, model_state)
            if tokenizer is not None:
                tokenizer.save(tmp / "tokenizer.json")
            (tmp / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
            torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "data": data_state,
                        "counters": counters, "world_size": env.world_size, "scaler": scaler}, tmp / "trainer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, **counters, "metrics": metrics}, indent=2)
                                            + "\n")
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = latest_checkpoint(run_dir)
            raise OSError(error.errno, f"could not write checkpoint {final} ({error.strerror or error}); "
                                       f"{f'the last one, {previous}, is intact' if previous else 'none was kept'}; "
                                       f"free space on the disk or pick another --out.dir") from None
    env.barrier()
    if env.is_main:
        if before_rename is not None:
            before_rename(tmp)
        if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    env.barrier()
    return final


def load_checkpoint(path: Path, *, inner: nn.Module, env: Distributed | None = None) -> dict[str, Any]:
    """Load the weights of checkpoint `path` into the (unwrapped) model; return the trainer state for the rest.

    Under FSDP the model's parameters are shards (DTensors): the full weights are read into a plain copy and each
    process keeps its shards of them (`set_model_state_dict`, every process calls this).
    """
    if not (path / "trainer.pt").is_file():
        raise FileNotFoundError(f"{path} is not a complete training checkpoint (no trainer.pt); pick another one "
                                f"from {path.parent}")
    if env is not None and env.enabled and _is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        from tformer.models import build_model

        full = build_model(inner.config)
        load_weights(full, path)  # checks every name and shape
        # tied weights once, under the name FSDP sharded them by (their other names hold the same parameter)
        names = {name for name, _ in inner.named_parameters()} | {name for name, _ in inner.named_buffers()}
        state = {name: tensor for name, tensor in full.state_dict().items() if name in names}
        set_model_state_dict(inner, state, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        load_weights(inner, path)
    return torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)


def _is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def restore_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                      env: Distributed) -> None:
    """Load a saved full optimizer state into this process's optimizer (sharded again under FSDP).

    One process saves the optimizer's own format (parameters numbered in group order), torchrun processes save
    parameters by name; either loads into either, so a run can resume with another number of processes.
    """
    by_name = any(isinstance(p, str) for group in state["param_groups"] for p in group["params"])
    if not env.enabled and not by_name:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if not by_name:
        state = _optimizer_state_by_name(model, optimizer, state)
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=env.enabled))


def _optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> dict[str, Any]:
    """A one-process optimizer state keyed by parameter names (the groups are built in the same order)."""
    names = {id(p): re.sub(r"^(_orig_mod\.)?(module\.)?", "", n) for n, p in model.named_parameters()}
    name_of: dict[int, str] = {}
    for saved, current in zip(state["param_groups"], optimizer.param_groups, strict=True):
        if len(saved["params"]) != len(current["params"]):
            raise ValueError("the checkpoint's optimizer state does not match this model's parameters; resume with "
                             "the recipe that wrote it")
        name_of.update({i: names[id(p)] for i, p in zip(saved["params"], current["params"], strict=True)})
    return {"state": {name_of[i]: value for i, value in state["state"].items()},
            "param_groups": [{**g, "params": [name_of[i] for i in g["params"]]} for g in state["param_groups"]]}


def restore_rng(path: Path, env: Distributed) -> None:
    """Each process takes back its own RNG state (rank 0's when the world size changed)."""
    own = path / f"rng-rank{env.rank}.pt"
    set_rng_state(torch.load(own if own.is_file() else path / "rng-rank0.pt", weights_only=True))
