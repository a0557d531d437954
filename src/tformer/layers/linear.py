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
            return F.linear(x, self.weight, self.bias)
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
