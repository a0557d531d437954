"""Local attention (Liu et al. 2018, the T-DMCA's "L" layers; tensor2tensor's `masked_local_attention_1d`).

The sequence is cut into blocks of `block_size` positions; a query sees the keys at or before it in its own block
and in the `look_back` blocks before it (the rule is `layers/windows.py`'s `local_visible`, read here, never
rewritten). Two paths, as for full attention:

* explicit (`return_weights=True`): `attention_steps` under the whole (N, N) local mask, so the weights
  (batch, heads, N, N) can be printed and drawn; memory N * N.
* fast (default): blocked attention. N is padded up to a multiple of b and viewed as (blocks, b); each block's
  queries attend to its own b keys and the look_back blocks before it, (look_back + 1) * b keys, in one fused
  SDPA call over all blocks. Scores are (N, (look_back + 1) * b): memory linear in N. The mask is one
  (b, (look_back + 1) * b) table from `local_visible` on block-relative positions, and with it which keys exist
  (not before position 0, not past N, not padding). torch's `flex_attention` with a block mask was measured
  against it on this machine's CPU (`benchmarks/local_attention_paths.py`); the blocked SDPA is kept (see there).

Rows with no visible key (a padding query whose keys are all padding) give zeros on both paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.layers.attention import attention_steps, fused_attention
from tformer.layers.windows import local_visible


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, *, block_size: int, look_back: int, key_padding: Tensor | None = None,
    dropout_p: float = 0.0, return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Causal local self-attention: q, k, v (batch, heads, N, head_dim) at positions 0..N-1, key_padding
    (batch, N) bool (True = real token) -> (out (batch, heads, N, head_dim), weights (batch, heads, N, N) when
    `return_weights`, else None)."""
    check_local_window(block_size, look_back)
    _check_inputs(q, k, v, key_padding)
    key_padding = None if key_padding is None else key_padding.bool()
    if return_weights:
        positions = torch.arange(q.size(-2), device=q.device)
        mask = local_visible(positions, positions, block_size, look_back)
        if key_padding is not None:
            mask = mask & key_padding[:, None, None, :]
        steps = attention_steps(q, k, v, mask, dropout_p=dropout_p)
        return steps.out, steps.alpha
    return blocked_local_attention(q, k, v, block_size, look_back, key_padding, dropout_p), None


def blocked_local_attention(
    q: Tensor, k: Tensor, v: Tensor, block_size: int, look_back: int, key_padding: Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """The fast path of `local_attention`: (batch, heads, N, head_dim) in and out, memory linear in N."""
    check_local_window(block_size, look_back)
    batch, heads, length, _ = q.shape
    # Block-relative positions: the queries sit in block `back`, the keys in blocks 0..back (the query's block and
    # the `back` blocks before it), the same table for every block.
    n_blocks = -(-length // block_size)
    back = min(look_back, max(n_blocks - 1, 0))  # blocks further back than position 0 never exist
    query_slots = torch.arange(back * block_size, (back + 1) * block_size, device=q.device)
    key_slots = torch.arange((back + 1) * block_size, device=q.device)
    relative = local_visible(query_slots, key_slots, block_size, look_back)  # (b, (back + 1) * b)
    padded = n_blocks * block_size
    exists = torch.zeros(batch, padded, dtype=torch.bool, device=q.device)
    exists[:, :length] = True if key_padding is None else key_padding
    key_exists = _with_blocks_before(exists.view(batch, n_blocks, block_size), back, dim=1)  # (batch, blocks, W)
    mask = relative & key_exists[:, None, :, None, :]  # (batch, 1, blocks, b, (back + 1) * b)
    blocks = [F.pad(x, (0, 0, 0, padded - length)).view(batch, heads, n_blocks, block_size, x.size(-1))
              for x in (q, k, v)]
    keys, values = (_with_blocks_before(x, back, dim=2) for x in blocks[1:])
    out = fused_attention(blocks[0], keys, values, mask, dropout_p=dropout_p)
    return out.reshape(batch, heads, padded, v.size(-1))[:, :, :length]


def _with_blocks_before(blocks: Tensor, back: int, dim: int) -> Tensor:
    """(..., blocks, b, ...) -> (..., blocks, (back + 1) * b, ...): each block preceded by the `back` blocks before
    it, zeros where those would come before position 0 (the mask marks them absent)."""
    if back == 0:
        return blocks
    before = [0, 0] * (blocks.dim() - dim - 1) + [back, 0]  # F.pad lists dimensions last first
    front = F.pad(blocks, before)
    n_blocks = blocks.size(dim)
    shifted = [front.narrow(dim, back - s, n_blocks) for s in range(back, -1, -1)]
    return torch.cat(shifted, dim=dim + 1)


def check_local_window(block_size: int, look_back: int) -> None:
    """Raise `local_visible`'s one-line ValueError for a block_size < 1 or a look_back < 0."""
    no_positions = torch.empty(0, dtype=torch.long)
    local_visible(no_positions, no_positions, block_size, look_back)


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None) -> None:
    same_positions = q.shape[:3] == k.shape[:3] == v.shape[:3] and q.size(-1) == k.size(-1)
    if not (q.dim() == k.dim() == v.dim() == 4 and same_positions):
        raise ValueError(f"local_attention needs q, k, v of shape (batch, heads, N, head_dim), one N for all, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if key_padding is not None and key_padding.shape != (q.size(0), q.size(-2)):
        raise ValueError(f"key_padding must be (batch, N) = {(q.size(0), q.size(-2))} bool (True = real token), "
                         f"got {tuple(key_padding.shape)}")
