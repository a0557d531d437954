"""`Linear`: `nn.Linear` (same parameters, same state dict) with a faster CPU product for a few rows at inference.

Decoding feeds a handful of rows per step (one per sequence or beam), and there the layout of the BLAS call matters
more than the arithmetic. `F.linear(x, W)` multiplies x (rows, in) by W.T: on a CPU with MKL that runs a one-thread
matrix-vector product for one row and a poorly threaded small-matrix kernel for a few. The same product written as
(W @ x.T).T, with the rows as the columns of the right-hand side, takes MKL's threaded matrix-matrix path. Timed
alone on the project's 2-core machine (torch 2.13, MKL): gpt2's 48 block projections at 8 rows 50 -> 34 ms, its
50,257-row output projection at 1 row 13.9 -> 9.0 ms and at 8 rows 34 -> 14 ms; what that does to whole `generate`
calls is in docs/benchmarks.md. A single row is doubled, because one column would dispatch to the matrix-vector
kernel again.

The small-rows path runs only where no gradient is recorded, on float32 CPU tensors with at most
`SMALL_ROWS_MAX` rows, also inside torch.compile (inductor calls the same MKL product), except for a single row
there, which the compiled decoding step turns into a reduction of its own; everywhere else this is exactly
`nn.Linear`. Results equal `F.linear`'s to float32 rounding (the summation order differs).

Training in bfloat16 on a CPU without bf16 instructions (no AVX512-BF16 / AMX: oneDNN cannot run bf16 matrix
products, torch falls back to generic kernels) has the opposite problem: the fallback's speed depends on the
layout, and the input gradient of a projection, grad @ W, hits the slowest one. `linear()` then computes that
gradient as grad @ (W.T copied contiguous).T, the layout the forward product uses: on the project's Zen 3, for 64
rows, 335 -> 56 ms for a 3072 x 768 weight and 10.6 -> 0.45 s for BERT's 30,522 x 768 output projection. The copy
is one pass over W. Only where `torch.ops.mkldnn._is_mkldnn_bf16_supported()` is false; elsewhere autograd's own
backward runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_ROWS_MAX = 64  # above this, F.linear's kernel is as fast (gpt2 shapes, 2-core Zen 3)


class Linear(nn.Linear):
    """A projection y = x W^T + b: (..., in_features) -> (..., out_features); `nn.Linear` with a small-rows path."""

    def forward(self, x: Tensor) -> Tensor:
        if not _small_rows_apply(x, self.weight):
            return linear(x, self.weight, self.bias)
        rows = x.reshape(-1, x.size(-1))
        single = rows.size(0) == 1
        if single:
            rows = rows.repeat(2, 1)
        out = (self.weight @ rows.T if self.bias is None else torch.addmm(self.bias[:, None], self.weight, rows.T)).T
        return out[:1 if single else None].contiguous().view(*x.shape[:-1], self.out_features)


def _small_rows_apply(x: Tensor, weight: Tensor) -> bool:
    if x.device.type != "cpu" or not x.dtype == weight.dtype == torch.float32 or x.size(-1) == 0:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    rows = x.numel() // x.size(-1)
    if rows == 1:  # a compiled step lowers a one-row product to a reduction over all cores (generation/static.py)
        return not torch.compiler.is_compiling()
    return 1 < rows <= SMALL_ROWS_MAX


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


_native_bf16: bool | None = None


def _bf16_fallback(x: Tensor, weight: Tensor) -> bool:
    global _native_bf16
    if x.device.type != "cpu" or not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    if not (autocast_bf16 or x.dtype == weight.dtype == torch.bfloat16) or torch.compiler.is_compiling():
        return False
    if _native_bf16 is None:
        _native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return not _native_bf16


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
