"""`AcceleratedLinear`: `nn.Linear` (the same module, parameters and state dict) with two CPU-specific products.

* **Few rows at inference.** Decoding feeds a handful of rows per step (one per sequence or beam). On a CPU with
  MKL, `F.linear(x, W)` (x @ W.T) runs a one-thread matrix-vector product for one row and a poorly threaded
  small-matrix kernel for a few; the same product as (W @ x.T).T, the rows as the columns of the right-hand side,
  takes MKL's threaded matrix-matrix path. A single row is doubled, because one column would dispatch to the
  matrix-vector kernel again. Only where no gradient is recorded, on float32 CPU tensors with 2 to
  `SMALL_ROWS_MAX` rows (one row is doubled); inside torch.compile too, except a single row there, which the
  compiled decoding step (`accel/compiled_decode.py`) turns into a reduction of its own. Only on CPUs where
  `few_rows_slow()` holds: the trick was measured on AMD (Zen 3), where it wins, and on an Intel Xeon
  (AVX512/AMX), where F.linear's own kernels are faster and the trick loses; elsewhere F.linear runs.
* **bf16 training without bf16 instructions.** On a CPU without AVX512-BF16 / AMX oneDNN cannot multiply bf16
  and torch falls back to generic kernels whose speed depends on the layout; the input gradient grad @ W hits the
  slowest one. `linear()` then computes it as grad @ (W.T copied contiguous).T, the forward product's layout, at
  the cost of one pass over W. Only where `native_bf16()` is false; elsewhere autograd's own backward runs.

Both give `F.linear`'s results to float32 (bf16) rounding: the summation order differs. Measured gains, machine
and command: docs/benchmarks.md ("accel/: what each CPU path gains").
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_ROWS_MAX = 64  # above this, F.linear's kernel is as fast (gpt2 shapes, 2-core Zen 3)


class AcceleratedLinear(nn.Linear):
    """A projection y = x W^T + b: (..., in_features) -> (..., out_features); `nn.Linear` with the CPU paths."""

    def forward(self, x: Tensor) -> Tensor:
        if few_rows_apply(x, self.weight):
            return few_rows_linear(x, self.weight, self.bias)
        return linear(x, self.weight, self.bias)


def few_rows_apply(x: Tensor, weight: Tensor) -> bool:
    """True where (W @ x.T).T beats F.linear: float32 on a CPU, no gradient recorded, 1 to SMALL_ROWS_MAX rows."""
    if x.device.type != "cpu" or not x.dtype == weight.dtype == torch.float32 or x.size(-1) == 0:
        return False
    if not few_rows_slow():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    rows = x.numel() // x.size(-1)
    if rows == 1:  # a compiled step lowers a one-row product to a reduction over all cores (compiled_decode.py)
        return not torch.compiler.is_compiling()
    return 1 < rows <= SMALL_ROWS_MAX


def few_rows_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., in) W^T + b computed as (W @ x.T).T, with a single row doubled to two."""
    rows = x.reshape(-1, x.size(-1))
    single = rows.size(0) == 1
    if single:
        rows = rows.repeat(2, 1)
    out = (weight @ rows.T if bias is None else torch.addmm(bias[:, None], weight, rows.T)).T
    return out[:1 if single else None].contiguous().view(*x.shape[:-1], weight.size(0))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear`, except for bf16 training on a CPU without bf16 matrix instructions (see the module docstring)."""
    if _bf16_fallback(x, weight):
        if torch.is_autocast_enabled("cpu"):
            x, weight = x.to(torch.bfloat16), weight.to(torch.bfloat16)  # what autocast would do, kept in the graph
            bias = bias.to(torch.bfloat16) if bias is not None else None
            with torch.autocast("cpu", enabled=False):
                return _BF16FallbackLinear.apply(x, weight, bias)
        return _BF16FallbackLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


FEW_ROWS_FLAG = "TFORMER_ACCEL_FEW_ROWS"
_FEW_ROWS_SLOW: list[bool] = []  # decided once, eagerly (`apply` asks first); a compiled graph reads it as a constant


def few_rows_slow() -> bool:
    """Whether F.linear is slow for a few rows on this CPU, so the few-rows products (here and in the compiled
    step) are used: on AMD CPUs (MKL's kernels there; measured on Zen 3), not on others (measured on an Intel
    Xeon with AVX512/AMX, where they lose). TFORMER_ACCEL_FEW_ROWS=1 or 0 decides instead; asked once."""
    if not _FEW_ROWS_SLOW:
        forced = os.environ.get(FEW_ROWS_FLAG, "").strip()
        if forced not in ("", "0", "1"):
            raise ValueError(f"{FEW_ROWS_FLAG}={forced!r} is not a switch; set it to 1 (on) or 0 (off), or unset it")
        _FEW_ROWS_SLOW.append(forced == "1" if forced else cpu_vendor() == "AuthenticAMD")
    return _FEW_ROWS_SLOW[0]


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's vendor string (GenuineIntel, AuthenticAMD, ...) from /proc/cpuinfo; "" where it cannot be read."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


@functools.cache
def native_bf16() -> bool:
    """Whether oneDNN multiplies bf16 natively on this CPU (AVX512-BF16 or AMX); asked once per process."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _bf16_fallback(x: Tensor, weight: Tensor) -> bool:
    if x.device.type != "cpu" or not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    if not (autocast_bf16 or x.dtype == weight.dtype == torch.bfloat16) or torch.compiler.is_compiling():
        return False
    return not native_bf16()


class _BF16FallbackLinear(torch.autograd.Function):
    """F.linear on bf16 tensors whose input gradient multiplies in the fallback kernels' fast layout."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None  # type: ignore[attr-defined]
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad  # type: ignore[attr-defined]
        rows = grad.reshape(-1, grad.size(-1))
        grad_x = grad @ weight.t().contiguous().t() if needs_x else None
        grad_weight = rows.t() @ x.reshape(-1, x.size(-1)) if needs_weight else None
        grad_bias = rows.sum(0) if needs_bias and ctx.has_bias else None  # type: ignore[attr-defined]
        return grad_x, grad_weight, grad_bias
