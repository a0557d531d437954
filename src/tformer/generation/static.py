"""The fast path of decoder-only greedy decoding and sampling: a static KV cache and a compiled decoding step.

`StaticDecoderState` does what `DecoderState` does for greedy decoding and sampling, with fixed shapes: the
tokens live in a buffer of the final length, the keys/values in a `StaticKVCache` sized once, and each decoding
step feeds one token per row at a tensor position (`cache_position`). Nothing in a step depends on a Python-side
length or reads a value back from the device, so the one-token step can be compiled once with torch.compile and
replayed for every token.

How the step is compiled (a reduction backend for single-row products, kept per model, an eager fallback where
torch.compile cannot run) is `tformer/accel/compiled_decode.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tformer.accel.compiled_decode import run_step

SLOT_BUCKET = 64  # cache sizes are rounded up to this, so prompts of similar lengths share one compiled step


def can_use_static_cache(model: nn.Module) -> bool:
    """True for decoder-only models that offer a pre-allocated cache (GPT)."""
    return callable(getattr(model, "new_static_cache", None)) and not callable(getattr(model, "encode", None))


def _logits_step(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None,
                 cache_position: Tensor, cache: Any) -> Tensor:
    """One forward over the new tokens at slots `cache_position`: float32 logits (rows, vocab) of the last one."""
    out = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                cache_position=cache_position, logits_to_keep=1)
    return out.logits[:, -1].float()


class StaticDecoderState:
    """Decoder-only rows (batch * copies, length) continued one token per step with a `StaticKVCache`.

    The same interface as `DecoderState` for greedy decoding and sampling (`tokens`, `length`, `next_logits`,
    `append`); no beam reordering. The prompt is read once (prefill, eagerly: its length varies); every later step
    feeds the last token of each row at slot `length - 1`, compiled when `compile` is true.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 max_new_tokens: int, compile: bool = False) -> None:
        self.model, self.compile = model, compile
        rows, prompt_len = input_ids.size(0) * copies, input_ids.size(1)
        device = input_ids.device
        slots = prompt_len + max_new_tokens - 1  # the last new token is never fed back
        slots = -(-slots // SLOT_BUCKET) * SLOT_BUCKET
        self.cache = model.new_static_cache(rows, slots, device=device)
        self.buffer = input_ids.new_zeros(rows, prompt_len + max_new_tokens)
        self.buffer[:, :prompt_len] = input_ids.repeat_interleave(copies, dim=0)
        self._length = prompt_len
        self.prefilled = False
        padded = attention_mask is not None and not bool(attention_mask.all())  # once, at the start
        self.mask: Tensor | None = None
        self.positions: Tensor | None = None  # the position of each row's next token (rows, 1), padding only
        if padded:
            assert attention_mask is not None
            self.mask = torch.ones(rows, slots, dtype=torch.long, device=device)
            self.mask[:, :prompt_len] = attention_mask.repeat_interleave(copies, dim=0)
            # Left padding: each row's first real token is position 0 (pads are clamped to 0; no one sees them).
            self.prompt_positions = (self.mask[:, :prompt_len].cumsum(-1) - 1).clamp(min=0)
            self.positions = self.prompt_positions[:, -1:] + 1
        self.slot = torch.tensor([prompt_len], device=device)  # where the next fed token goes (advanced in place)

    @property
    def tokens(self) -> Tensor:
        return self.buffer[:, :self._length]

    @property
    def length(self) -> int:
        return self._length

    def next_logits(self) -> Tensor:
        """float32 logits (rows, vocab) of the token that follows each row."""
        if not self.prefilled:
            self.prefilled = True
            prompt_len = self._length
            slots = torch.arange(prompt_len, device=self.buffer.device)
            positions = self.prompt_positions if self.positions is not None else None
            return _logits_step(self.model, self.buffer[:, :prompt_len], self.mask, positions, slots, self.cache)
        last = self.buffer[:, self._length - 1:self._length].clone()  # a fresh (rows, 1) input of fixed layout
        logits = run_step(_logits_step, self.model, last, self.mask, self.positions, self.slot, self.cache,
                          compile=self.compile)
        self.slot.add_(1)
        if self.positions is not None:
            self.positions.add_(1)
        return logits

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,)."""
        if parents is not None:
            raise ValueError("the static fast path does not reorder rows (beam search uses the dynamic cache)")
        self.buffer[:, self._length] = next_tokens
        self._length += 1
