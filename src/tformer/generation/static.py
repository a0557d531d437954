"""The fast path of decoding: a static KV cache and a compiled decoding step, for every family that generates.

`StaticDecoderState` does what `DecoderState` does, with fixed shapes: the tokens live in a buffer of the final
length, the keys/values in a `StaticKVCache` sized once, and each decoding step feeds one token per row at a
tensor position (`cache_position`). Nothing in a step depends on a Python-side length or reads a value back from
the device, so the one-token step can be compiled once with torch.compile and replayed for every token. Beam
search reorders the rows in place (same shapes).

How the step is compiled (a reduction backend for single-row products, kept per model, an eager fallback where
torch.compile cannot run) is `tformer/accel/compiled_decode.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tformer.accel.compiled_decode import run_step
from tformer.generation.state import Source, decoder_logits, prompt_of

SLOT_BUCKET = 64  # cache sizes are rounded up to this, so prompts of similar lengths share one compiled step


def can_use_static_cache(model: nn.Module) -> bool:
    """True for models that offer a pre-allocated cache (GPT, EncoderDecoder)."""
    return callable(getattr(model, "new_static_cache", None))


def static_cache_by_default(model: nn.Module) -> bool:
    """True where generate's default takes the static cache: a model that offers one and can serve it (a T-DMCA
    pattern with local or compressed layers cannot: `supports_static_cache` is False, its new_static_cache refuses)."""
    return can_use_static_cache(model) and getattr(model, "supports_static_cache", True)


def _logits_step(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None,
                 cache_position: Tensor, cache: Any, source: Source | None = None) -> Tensor:
    """One forward over the new tokens at slots `cache_position`: float32 logits (rows, vocab) of the last one."""
    return decoder_logits(model, input_ids, attention_mask, position_ids, cache, cache_position, source)


class StaticDecoderState:
    """Rows (batch * copies, length) continued one token per step with a `StaticKVCache`.

    The same interface as `DecoderState` (`tokens`, `length`, `next_logits`, `append`, `reorder`). The prompt is
    read once (prefill, eagerly: its length varies); every later step feeds the last token of each row at slot
    `length - 1`, compiled when `compile` is true. An encoder-decoder's decoder starts from its start token.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 max_new_tokens: int, compile: bool = False, decoder_start_token_id: int | None = None) -> None:
        self.model, self.compile = model, compile
        prompt = prompt_of(model, input_ids, attention_mask, copies, decoder_start_token_id)
        self.source = prompt.source
        rows, prompt_len = prompt.tokens.shape
        device = input_ids.device
        slots = prompt_len + max_new_tokens - 1  # the last new token is never fed back
        slots = -(-slots // SLOT_BUCKET) * SLOT_BUCKET
        self.cache = model.new_static_cache(rows, slots, device=device)
        self.buffer = prompt.tokens.new_zeros(rows, prompt_len + max_new_tokens)
        self.buffer[:, :prompt_len] = prompt.tokens
        self._length = prompt_len
        self.prefilled = False
        self.mask: Tensor | None = None
        self.positions: Tensor | None = None  # the position of each row's next token (rows, 1), padding only
        if prompt.mask is not None and prompt.position_ids is not None:
            self.mask = torch.ones(rows, slots, dtype=torch.long, device=device)
            self.mask[:, :prompt_len] = prompt.mask
            self.prompt_positions = prompt.position_ids
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
            return _logits_step(self.model, self.buffer[:, :prompt_len], self.mask, positions, slots, self.cache,
                                self.source)
        # A fresh (rows, 1) contiguous input: the same strides whatever the buffer's width, so no recompile.
        last = self.buffer[:, self._length - 1:self._length].clone(memory_format=torch.contiguous_format)
        logits = run_step(_logits_step, self.model, last, self.mask, self.positions, self.slot, self.cache,
                          self.source, compile=self.compile)
        self.slot.add_(1)
        if self.positions is not None:
            self.positions.add_(1)
        return logits

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,); beam search first names each row's parent row (rows,)."""
        if parents is not None:
            self.reorder(parents)
        self.buffer[:, self._length] = next_tokens
        self._length += 1

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows named by `rows` (rows,), in place: the tokens, masks, positions and cache of each
        surviving beam's parent (the encoded source needs none: a beam's parent is a beam of the same input)."""
        self.buffer.copy_(self.buffer.index_select(0, rows))
        for kept in (self.mask, self.positions):
            if kept is not None:
                kept.copy_(kept.index_select(0, rows))
        self.cache.reorder(rows)
