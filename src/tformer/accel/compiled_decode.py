"""The compiled decoding step: torch.compile of one fixed-shape step, kept per model, with an eager fallback.

The static cache's one-token step (`generation/static.py`) has the same shapes at every token, so it is compiled
once and replayed. With accel on it goes through inductor with one change: a matrix product with a single row
(batch-1 decoding, where every weight is read once per token and memory bandwidth is the limit) becomes a
multiply-and-sum that inductor turns into a vectorised reduction over all cores, instead of a one-core BLAS
matrix-vector product, on CPUs where that product is slow (`cpu_linear.few_rows_slow`); with accel off, or on
other CPUs, it is plain inductor. Where torch.compile cannot run (no C++ compiler, an
unsupported platform), the step runs eagerly after a one-line warning, with the same results, and later steps
stay eager without warning again. Measured gains: docs/benchmarks.md ("accel/: what each CPU path gains").
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from tformer.accel.cpu_linear import few_rows_slow
from tformer.accel.transform import enabled

MATVEC_MAX_ROWS = 1  # matrix products with at most this many rows become reductions in the compiled step


def matvec_as_reduction(a: Tensor, b: Tensor) -> Tensor | Any:
    """a (rows, k) @ b (k, n) with few rows as sum(a[:, :, None] * b, 1): one fused reduction kernel."""
    if a.size(0) <= MATVEC_MAX_ROWS and a.dtype == b.dtype == torch.float32 and a.device.type == "cpu":
        return (a[:, :, None] * b[None, :, :]).sum(dim=1)
    return NotImplemented


def inductor_backend(graph: Any, example_inputs: Any) -> Any:
    """inductor, with single-row matrix products (and their bias) written as reductions."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    aten = torch.ops.aten
    table = dict(select_decomp_table())
    default_mm, default_addmm = table.get(aten.mm.default), table.get(aten.addmm.default)

    def mm(a: Tensor, b: Tensor, *args: Any, **kwargs: Any) -> Any:
        out = matvec_as_reduction(a, b) if not args and not kwargs else NotImplemented
        return out if out is not NotImplemented or default_mm is None else default_mm(a, b, *args, **kwargs)

    def addmm(bias: Tensor, a: Tensor, b: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Any:
        out = matvec_as_reduction(a, b) if beta == 1 and alpha == 1 else NotImplemented
        if out is not NotImplemented:
            return out + bias
        return NotImplemented if default_addmm is None else default_addmm(bias, a, b, beta=beta, alpha=alpha)

    table[aten.mm.default], table[aten.addmm.default] = mm, addmm
    return compile_fx(graph, example_inputs, decompositions=table)


class CompiledSteps:
    """The compiled decoding steps, one per (model, step function, accel on/off): a cache keyed by what they
    depend on (dynamo's guards check the shapes), dropped with the model. `failure`: why torch.compile did not
    work here, once it failed; the steps then run eagerly."""

    def __init__(self) -> None:
        self._steps: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Callable[..., Tensor], bool], Any]] = (
            weakref.WeakKeyDictionary())
        self.failure: str | None = None

    def compiled(self, step: Callable[..., Tensor], model: nn.Module, accel: bool) -> Callable[..., Tensor]:
        """`step` through torch.compile for `model`: compiled on the first call, reused afterwards."""
        per_model = self._steps.setdefault(model, {})
        if (step, accel) not in per_model:
            backend = inductor_backend if accel and few_rows_slow() else "inductor"
            per_model[step, accel] = torch.compile(step, backend=backend, fullgraph=True, dynamic=False)
        return per_model[step, accel]

    def run(self, step: Callable[..., Tensor], model: nn.Module, *args: Any, compile: bool, accel: bool) -> Tensor:
        """step(model, *args), compiled when `compile` is true and torch.compile works here."""
        if not compile or self.failure is not None:
            return step(model, *args)
        try:
            return self.compiled(step, model, accel)(model, *args)
        except Exception as error:  # no C++ compiler, unsupported platform...: the eager step gives the same result
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.failure = f"{type(error).__name__}: {first_line}"
            warnings.warn(f"torch.compile is unavailable ({self.failure[:200]}); generating without it",
                          RuntimeWarning, stacklevel=5)
            return step(model, *args)


STEPS = CompiledSteps()  # the process's steps (a compiler that failed once fails for every model)


def run_step(step: Callable[..., Tensor], model: nn.Module, *args: Any, compile: bool) -> Tensor:
    """step(model, *args): through `STEPS`, compiled when asked and possible, with the accel flag's backend."""
    return STEPS.run(step, model, *args, compile=compile, accel=enabled())


def compile_available() -> bool:
    """False once torch.compile has failed in this process (the fast path then runs eagerly)."""
    return STEPS.failure is None
