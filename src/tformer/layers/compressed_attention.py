"""Memory-compressed attention (Liu et al. 2018, the T-DMCA's "M" layers): the keys and values are shortened by a
strided convolution, the queries keep their full length, so the scores cost N * N / c instead of N * N.

Which slot a query may see is `layers/windows.py`'s `compressed_visible`: compressed slot j summarises positions
[c*j, c*j + c - 1] and the query at position i sees it only once that group has ended (c*j + c - 1 <= i), plus a
first slot, the uncompressed key/value of position 0, that every query sees when c > 1. Decoding keeps the slots
in `layers/compressed_cache.py`'s `CompressedKVCache`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.layers.attention import attention_steps, fused_attention
from tformer.layers.windows import compressed_visible


def check_compression(compression: int) -> None:
    """Raise a one-line ValueError unless compression >= 1."""
    if compression < 1:
        raise ValueError(f"compression={compression} must be at least 1 (the paper uses 3; 1 means no compression)")


class KeyValueCompression(nn.Module):
    """The T-DMCA's strided convolution: keys and values (batch, heads, N, head_dim) -> (batch, heads, N // c,
    head_dim) each, one slot per c positions (kernel = stride = c, valid padding: a trailing partial group is
    dropped).

    Two Conv1d over all d_model = heads * head_dim channels, one for the keys and one for the values, applied after
    the key/value projections, as the paper says ("after the projections, ... a strided convolution", its own
    weights for K and for V). tensor2tensor (`conv_elems_1d` in `multihead_attention`) compresses the layer's input
    x once and projects keys and values from that one memory; compressing after the projections keeps the layer's
    projections those of full attention (one fused QKV matrix) and lets the decoding cache store projected keys.

    Initialisation: each slot starts as the mean of its group's keys (values): weight[o, i, t] = 1/c where o = i, 0
    elsewhere, bias 0 (`reset_to_group_average`). At step 0 a compressed layer attends to group averages, each head
    keeping its own channels; torch's default Conv1d init would instead mix all d_model channels, across heads, at
    random. With compression 1 this is the identity.
    """

    def __init__(self, d_model: int, n_heads: int, compression: int) -> None:
        super().__init__()
        check_compression(compression)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.compression = d_model, n_heads, compression
        self.keys = nn.Conv1d(d_model, d_model, kernel_size=compression, stride=compression)
        self.values = nn.Conv1d(d_model, d_model, kernel_size=compression, stride=compression)
        self.reset_to_group_average()

    @torch.no_grad()
    def reset_to_group_average(self) -> None:
        """Set both convolutions to the mean over each group, channel by channel (compression 1: the identity)."""
        eye = torch.eye(self.d_model)[:, :, None].expand(-1, -1, self.compression) / self.compression
        for conv in (self.keys, self.values):
            conv.weight.copy_(eye)
            conv.bias.zero_()

    def _compress(self, conv: nn.Conv1d, x: Tensor) -> Tensor:
        batch, heads, length, head_dim = x.shape
        if heads * head_dim != self.d_model:
            raise ValueError(f"keys/values of {heads} heads x {head_dim} = {heads * head_dim} channels do not match "
                             f"this compression's d_model={self.d_model}")
        channels = x.transpose(2, 3).reshape(batch, heads * head_dim, length)  # (batch, d_model, N)
        slots = conv(channels)  # (batch, d_model, N // c)
        return slots.view(batch, heads, head_dim, -1).transpose(2, 3)

    def forward(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """(batch, heads, N, head_dim) each -> the compressed (batch, heads, N // c, head_dim) each."""
        return self._compress(self.keys, keys), self._compress(self.values, values)


def compressed_key_padding(key_padding: Tensor, compression: int) -> Tensor:
    """(batch, N) 1/0 or bool token mask -> (batch, first + N // c), same dtype: the first slot (c > 1) is token
    0's entry; slot j is real when any token of its group [c*j, c*j + c - 1] is."""
    check_compression(compression)
    batch, length = key_padding.shape
    n_slots = length // compression
    real = key_padding[:, : n_slots * compression].bool().view(batch, n_slots, compression).any(dim=-1)
    slots = real.to(key_padding.dtype)
    return slots if compression == 1 else torch.cat([key_padding[:, :1], slots], dim=1)


def compressed_keys_values(k: Tensor, v: Tensor, compress: KeyValueCompression) -> tuple[Tensor, Tensor]:
    """The keys and values a compressed layer attends to: [first slot (k/v of position 0, when c > 1) ;
    compress(k, v)], (batch, heads, first + N // c, head_dim) each."""
    keys, values = compress(k, v)
    if compress.compression == 1:
        return keys, values
    return torch.cat([k[:, :, :1], keys], dim=2), torch.cat([v[:, :, :1], values], dim=2)


def compressed_attention(
    q: Tensor, k: Tensor, v: Tensor, compress: KeyValueCompression, *, key_padding: Tensor | None = None,
    dropout_p: float = 0.0, return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Causal memory-compressed self-attention over positions 0..N-1 (no cache).

    q, k, v: (batch, heads, N, head_dim); key_padding: (batch, N) bool or 1/0, True = real token. Returns (out
    (batch, heads, N, head_dim), weights (batch, heads, N, first + N // c) or None). return_weights=True takes the
    explicit path (`attention_steps`); else torch's fused kernel with the visibility mask, whose scores take
    N * (first + N // c) memory. A query whose visible slots are all padding gets zeros. A slot is real when any
    token of its group is; a group that mixes padding and tokens compresses the padding's keys too (so does the
    cache, which never sees the padding: cached and uncached stay equal).
    """
    length, c = q.size(-2), compress.compression
    if length < c:
        raise ValueError(f"a sequence of N={length} tokens is shorter than the compression kernel {c}: give at least "
                         f"{c} tokens, or decode short prompts through a CompressedKVCache")
    keys, values = compressed_keys_values(k, v, compress)
    mask = compressed_visible(torch.arange(length, device=q.device), length // c, c)[None, None]
    if key_padding is not None:
        mask = mask & compressed_key_padding(key_padding, c).bool()[:, None, None, :]
    if return_weights:
        steps = attention_steps(q, keys, values, mask, dropout_p=dropout_p)
        return steps.out, steps.alpha
    return fused_attention(q, keys, values, mask, dropout_p=dropout_p), None


def compressed_key_labels(tokens: list[str], compression: int, *, with_text: bool = True,
                          separator: str = " ") -> list[str]:
    """A name for each key slot of a compressed layer over `tokens`: "first (token 0: the)" (when c > 1), then
    "tokens 0–2: the cat sat", "tokens 3–5: ..." (with_text=False: "first (token 0)", "tokens 0–2"). A slot's
    text is its tokens joined by `separator`, stripped: " " for words, "" for pieces that carry their own spaces
    (byte-level BPE's " cat", characters)."""
    check_compression(compression)
    if not tokens:
        return []

    def text(start: int, end: int) -> str:
        return ": " + separator.join(tokens[start : end + 1]).strip() if with_text else ""

    labels = [] if compression == 1 else [f"first (token 0{text(0, 0)})"]
    for start in range(0, len(tokens) - compression + 1, compression):
        end = start + compression - 1
        span = f"token {start}" if compression == 1 else f"tokens {start}–{end}"
        labels.append(span + text(start, end))
    return labels
