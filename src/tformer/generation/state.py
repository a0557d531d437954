"""The model side of decoding: feed the tokens so far, keep the KV cache, the masks and the positions.

Generation only needs next-token logits from a model. `DecoderState` gets them from any model with
`forward(..., cache=..., cache_position=...)` and `new_cache()`; a model that also has `encode` (the
encoder-decoder) reads the input as its source, encodes it once and starts its decoder from one start token.
Each forward names the positions of the tokens it feeds (`cache_position`), so the cache never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tformer.models.outputs import EncoderOutput


def can_generate(model: nn.Module) -> bool:
    """True for models with a decoder that predicts the next token and a KV cache (GPT, EncoderDecoder)."""
    return callable(getattr(model, "new_cache", None))


def is_encoder_decoder(model: nn.Module) -> bool:
    """True for models that encode a source first (EncoderDecoder): their input is not the decoder's prompt."""
    return callable(getattr(model, "encode", None))


@dataclass
class Source:
    """An encoder-decoder's encoded input, one copy per row: states (rows, source len, d_model), padding mask."""

    outputs: EncoderOutput
    mask: Tensor | None


@dataclass
class Prompt:
    """The decoder's first input: tokens (rows, length), their 1/0 mask and position ids under left padding
    (None without padding), and the encoded source of an encoder-decoder (else None)."""

    tokens: Tensor
    mask: Tensor | None
    position_ids: Tensor | None
    source: Source | None


def prompt_of(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
              decoder_start_token_id: int | None = None) -> Prompt:
    """rows = batch * copies: each input repeated `copies` times (beams, or samples per input), side by side."""
    padded = attention_mask is not None and not bool(attention_mask.all())
    mask = attention_mask if padded else None  # no mask lets attention take its fastest (causal) kernels
    if is_encoder_decoder(model):
        # The encoder runs once; its output is shared by every copy of the input.
        with torch.no_grad():  # decoding never backpropagates: a compiled step then sees one kind of tensor
            encoded = model.encode(input_ids, mask).last_hidden_state
        source_mask = mask.repeat_interleave(copies, dim=0) if mask is not None else None
        start = decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        tokens = input_ids.new_full((input_ids.size(0) * copies, 1), start)
        # The decoder's own tokens are never padding.
        return Prompt(tokens, None, None, Source(EncoderOutput(encoded.repeat_interleave(copies, dim=0)), source_mask))
    tokens = input_ids.repeat_interleave(copies, dim=0)
    mask = mask.repeat_interleave(copies, dim=0) if mask is not None else None
    # Left padding: each row's first real token is position 0 (pads are clamped to 0; no one sees them).
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0) if mask is not None else None
    return Prompt(tokens, mask, position_ids, None)


def decoder_logits(model: nn.Module, tokens: Tensor, mask: Tensor | None, position_ids: Tensor | None,
                   cache: object, cache_position: Tensor | None, source: Source | None) -> Tensor:
    """One forward over the new tokens (rows, new) at `cache_position`: float32 logits (rows, vocab) of the last."""
    if source is not None:
        out = model(attention_mask=source.mask, decoder_input_ids=tokens, decoder_attention_mask=mask,
                    encoder_outputs=source.outputs, cache=cache, cache_position=cache_position, logits_to_keep=1)
    else:
        out = model(tokens, attention_mask=mask, position_ids=position_ids, cache=cache,
                    cache_position=cache_position, logits_to_keep=1)
    return out.logits[:, -1].float()


class DecoderState:
    """The decoder's input so far, tokens (rows, length), and what the model needs to continue it.

    rows = batch * copies: each input is repeated `copies` times (beams, or samples per input), next to each
    other. With a (dynamic) cache only the tokens not yet seen are fed, at their positions; without one the whole
    sequence is, every step.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 use_cache: bool, decoder_start_token_id: int | None = None) -> None:
        self.model = model
        self.cache = model.new_cache() if use_cache else None
        self.cached = 0  # how many of `tokens` the cache already holds
        prompt = prompt_of(model, input_ids, attention_mask, copies, decoder_start_token_id)
        self.tokens, self.mask, self.positions, self.source = (prompt.tokens, prompt.mask, prompt.position_ids,
                                                               prompt.source)

    @property
    def length(self) -> int:
        return self.tokens.size(1)

    def next_logits(self) -> Tensor:
        """float32 logits (rows, vocab) of the token that follows each row."""
        start = self.cached if self.cache is not None else 0
        cache_position = None
        if self.cache is not None:
            cache_position = torch.arange(start, self.length, device=self.tokens.device)
        positions = self.positions[:, start:] if self.positions is not None else None
        logits = decoder_logits(self.model, self.tokens[:, start:], self.mask, positions, self.cache, cache_position,
                                self.source)
        self.cached = self.length
        return logits

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,); beam search first names each row's parent row (rows,)."""
        if parents is not None:
            self.reorder(parents)
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        if self.mask is not None and self.positions is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.size(0), 1)], dim=1)
            self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows named by `rows` (rows,): the tokens, masks and cache of each surviving beam's parent.

        The encoded source needs no reordering: a beam's parent is a beam of the same input.
        """
        self.tokens = self.tokens.index_select(0, rows)
        if self.mask is not None and self.positions is not None:
            self.mask = self.mask.index_select(0, rows)
            self.positions = self.positions.index_select(0, rows)
        if self.cache is not None:
            self.cache.reorder(rows)
