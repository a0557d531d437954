"""`apply(model)`: the model transform that turns accel on (or off) in place, and the one flag that decides it.

The transform changes the class of each `nn.Linear` to `AcceleratedLinear` (and of BERT's `MaskedLMHead`, whose
tied decoder is a functional `F.linear`, to `AcceleratedMaskedLMHead`), module by module: the same objects,
parameters, tied weights, hooks and state dict, only another `forward`. It is idempotent, and `enabled=False`
turns the classes back. `TFORMER_ACCEL=0` in the environment switches accel off wherever it is not given
explicitly: the models then run plain PyTorch, exactly.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tformer.accel.cpu_linear import AcceleratedLinear, few_rows_slow, linear
from tformer.models.bert import MaskedLMHead

ENV_FLAG = "TFORMER_ACCEL"
_ON, _OFF = ("1", "true", "on", "yes", ""), ("0", "false", "off", "no")

Model = TypeVar("Model", bound=nn.Module)


def enabled(flag: bool | None = None) -> bool:
    """`flag` when given, else the environment: TFORMER_ACCEL=0 (false, off, no) is off; unset or 1 is on."""
    if flag is not None:
        return flag
    value = os.environ.get(ENV_FLAG, "").strip().lower()
    if value not in _ON + _OFF:
        raise ValueError(f"{ENV_FLAG}={os.environ[ENV_FLAG]!r} is not a switch; set it to 1 (on) or 0 (off)")
    return value in _ON


_resolve = enabled  # for the functions below, whose `enabled` argument hides the name


class _LinearThroughAccel(TorchFunctionMode):
    """Routes every F.linear called while it is active through accel's `linear`."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return (linear if func is F.linear else func)(*args, **(kwargs or {}))


class AcceleratedMaskedLMHead(MaskedLMHead):
    """BERT's masked-LM head (batch, length, d_model) -> (batch, length, vocab) whose tied decoder product, a
    functional F.linear with the head's bias, goes through accel's `linear` (the bf16 fallback)."""

    def forward(self, hidden: Tensor) -> Tensor:
        if torch.compiler.is_compiling():  # the bf16 fallback is off under torch.compile anyway
            return super().forward(hidden)
        with _LinearThroughAccel():
            return super().forward(hidden)


_ACCELERATED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: AcceleratedLinear, MaskedLMHead: AcceleratedMaskedLMHead}
_PLAIN = {accelerated: plain for plain, accelerated in _ACCELERATED.items()}


def _swap(model: nn.Module, on: bool) -> list[tuple[nn.Module, type[nn.Module]]]:
    """Give each module of `model` its accelerated (on) or plain class; (module, former class) of those changed."""
    table = _ACCELERATED if on else _PLAIN
    if on:
        few_rows_slow()  # decided here, eagerly: a compiled graph could not read /proc/cpuinfo
    changed = []
    for module in model.modules():
        new = table.get(type(module))
        if new is not None:
            changed.append((module, type(module)))
            module.__class__ = new
    return changed


def apply(model: Model, enabled: bool | None = None) -> Model:
    """Turn accel on in `model`, in place (off with enabled=False, or TFORMER_ACCEL=0 when enabled is None)."""
    _swap(model, _resolve(enabled))
    return model


@contextlib.contextmanager
def applied(model: Model, enabled: bool | None = None) -> Iterator[Model]:
    """`apply` for the length of a `with` block; the modules get their former classes back afterwards."""
    changed = _swap(model, _resolve(enabled))
    try:
        yield model
    finally:
        for module, former in changed:
            module.__class__ = former


Function = TypeVar("Function", bound=Callable[..., Any])


def during_call(function: Function) -> Function:
    """Decorate `function(model, ...)` so that it runs with accel `applied` to its model."""

    @functools.wraps(function)
    def with_accel(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with applied(model):
            return function(model, *args, **kwargs)

    return with_accel  # type: ignore[return-value]
