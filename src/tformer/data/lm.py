"""Causal language-model batches: random windows of a token file on disk, read through `np.memmap`.

The token file (`train.bin`) is a flat array of token ids, numpy uint16 or uint32, as nanoGPT writes it. Each
batch picks `batch_size` random starts and reads `block_size + 1` tokens from each. The memmap is opened for
one batch and dropped straight after, because a long-lived memmap makes resident memory grow until the process
is killed (nanoGPT#287). The random generator is numpy's PCG64, whose state is a small dict of Python ints, so
`state_dict()` can go into a JSON training state and a resumed run draws the same batches a continuous run would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

TOKEN_DTYPES = ("uint16", "uint32")


def resolve_token_dtype(path: str | Path, dtype: str | np.dtype | type | None = None) -> np.dtype:
    """The dtype of a token file: `dtype` if given, else the "dtype" key of the meta.json next to it."""
    if dtype is None:
        meta_path = Path(path).with_name("meta.json")
        if not meta_path.is_file():
            raise ValueError(f"no dtype for {path}: pass dtype='uint16' or 'uint32', or write {meta_path} "
                             f"with a \"dtype\" key")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if "dtype" not in meta:
            raise ValueError(f"{meta_path} has no \"dtype\" key (keys: {sorted(meta)}); add \"dtype\": \"uint16\" "
                             f"or pass dtype=")
        dtype = meta["dtype"]
    resolved = np.dtype(dtype)
    if resolved.name not in TOKEN_DTYPES:
        raise ValueError(f"token dtype {resolved.name!r} for {path} is not supported; use one of {TOKEN_DTYPES}")
    return resolved


class CausalLMBatches:
    """Causal LM: random windows of a token file -> (input_ids, labels), both int64 (batch_size, block_size).

    Default (nanoGPT style): `x = data[i:i+T]`, `y = data[i+1:i+T+1]`; the labels are ALREADY shifted, so pass
    them to a loss that compares position t with label t (`F.cross_entropy(logits.flatten(0, 1), y.flatten())`),
    never to `tformer`'s GPT `labels=`, which shifts again. `hf_style=True` returns `(x, x.clone())` instead:
    the Hugging Face convention that `GPT(input_ids, labels=input_ids)` expects (the model shifts inside). Both
    styles draw the same starts for the same seed, so their `input_ids` are equal.

    Iterating never ends; one call of `next_batch()` is one batch. Deterministic given `seed`; `state_dict()` /
    `load_state_dict()` save and restore the generator so a resumed run continues with the same batches.
    """

    def __init__(self, path: str | Path, block_size: int, batch_size: int, *,
                 dtype: str | np.dtype | type | None = None, seed: int = 0, device: str | torch.device = "cpu",
                 hf_style: bool = False) -> None:
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size and batch_size must be >= 1, got block_size={block_size}, "
                             f"batch_size={batch_size}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file {self.path} does not exist; write it with `tformer prepare` "
                                    f"or np.array(ids, dtype=np.uint16).tofile(path)")
        self.dtype = resolve_token_dtype(self.path, dtype)
        size = self.path.stat().st_size
        if size % self.dtype.itemsize:
            raise ValueError(f"{self.path} has {size} bytes, not a multiple of {self.dtype.itemsize} "
                             f"({self.dtype.name}); the dtype is wrong or the file is truncated")
        self.num_tokens = size // self.dtype.itemsize
        if self.num_tokens < block_size + 1:
            raise ValueError(f"{self.path} holds {self.num_tokens} tokens, fewer than block_size + 1 = "
                             f"{block_size + 1}; use a smaller block_size or more data")
        self.block_size = block_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.hf_style = hf_style
        self.seed = seed
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._offsets = np.arange(block_size + 1, dtype=np.int64)

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """One batch: (input_ids, labels), int64 (batch_size, block_size), on `device`."""
        starts = self._rng.integers(0, self.num_tokens - self.block_size, size=self.batch_size)
        # Opened for this batch only; fancy indexing copies, so nothing keeps the mapping alive afterwards.
        data = np.memmap(self.path, dtype=self.dtype, mode="r")
        windows = torch.from_numpy(data[starts[:, None] + self._offsets].astype(np.int64))
        del data
        x = windows[:, :-1].contiguous()
        y = x.clone() if self.hf_style else windows[:, 1:].contiguous()
        if self.device.type == "cuda":
            return (x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True))
        return x.to(self.device), y.to(self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """The generator state and the batch geometry, as plain Python values (JSON-serialisable)."""
        return {"rng": self._rng.bit_generator.state, "block_size": self.block_size,
                "batch_size": self.batch_size, "num_tokens": self.num_tokens, "hf_style": self.hf_style}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict()`: the next batch is the one that would have followed it."""
        for key in ("block_size", "batch_size", "num_tokens", "hf_style"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"saved batch state has {key}={state[key]!r} but this loader has "
                                 f"{key}={getattr(self, key)!r}; resume with the same data and batch settings")
        if "rng" not in state:
            raise ValueError(f"batch state has no 'rng' key (keys: {sorted(state)}); pass a "
                             f"CausalLMBatches.state_dict()")
        self._rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        return (f"CausalLMBatches({str(self.path)!r}, block_size={self.block_size}, batch_size={self.batch_size}, "
                f"num_tokens={self.num_tokens}, dtype={self.dtype.name}, hf_style={self.hf_style})")
