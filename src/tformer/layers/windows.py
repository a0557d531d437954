"""Which key a query may see under local and memory-compressed attention (Liu et al. 2018, the T-DMCA).

The rules are written once here, over absolute positions, and every path reads them: the explicit and fast
paths of `local_attention` / `compressed_attention`, and the ring-buffer and compressed caches of decoding.

Local attention (block size b, `look_back` blocks): the sequence is cut into blocks [0, b), [b, 2b), ...;
the query at position i sees the key at position j when j <= i and j's block is i's block or one of the
`look_back` blocks before it. look_back=0 is the paper's wording ("in each block independently"); look_back=1
is tensor2tensor's `masked_local_attention_1d` (the whole previous block too), the default: with 0 the first
query of every block sees only itself, so the loss jumps at each block start.

Memory-compressed attention (compression c, kernel = stride = c): compressed slot j summarises the positions
[c*j, c*j + c - 1] and the query at position i sees it when c*j + c - 1 <= i: the group ended at or before i,
so no query sees a slot that summarises a later position. When c > 1 a first slot, the uncompressed key of
position 0, comes before the compressed ones and every query sees it (tensor2tensor prepends the first token
so the first c - 1 queries have something to attend to; with c = 1 it would only repeat key 0).
"""

from __future__ import annotations

import torch
from torch import Tensor


def local_visible(query_positions: Tensor, key_positions: Tensor, block_size: int, look_back: int) -> Tensor:
    """(queries, keys) bool: True where the key at `key_positions` (keys,) is visible to the query at
    `query_positions` (queries,) under local attention; a negative key position (an empty slot) is never visible.
    """
    if block_size < 1:
        raise ValueError(f"local_block_size={block_size} must be at least 1 (the paper uses 256)")
    if look_back < 0:
        raise ValueError(f"local_look_back={look_back} must be 0 (own block only) or more (blocks before it too)")
    queries, keys = query_positions[:, None], key_positions[None, :]
    near = keys // block_size >= queries // block_size - look_back
    return (keys >= 0) & (keys <= queries) & near


def compressed_slot_ends(n_slots: int, compression: int, device: torch.device | str | None = None) -> Tensor:
    """(n_slots,) the last position each compressed slot summarises: c*j + c - 1."""
    return torch.arange(n_slots, device=device) * compression + compression - 1


def compressed_visible(query_positions: Tensor, n_slots: int, compression: int) -> Tensor:
    """(queries, first slot + n_slots) bool: True where the query at `query_positions` (queries,) sees the slot:
    the first slot (key 0, uncompressed; only when compression > 1) always, compressed slot j when its group ended
    at or before the query."""
    if compression < 1:
        raise ValueError(f"compression={compression} must be at least 1 (the paper uses 3)")
    ends = compressed_slot_ends(n_slots, compression, query_positions.device)
    visible = ends[None, :] <= query_positions[:, None]
    if compression == 1:
        return visible
    first = torch.ones(query_positions.numel(), 1, dtype=torch.bool, device=query_positions.device)
    return torch.cat([first, visible], dim=1)
