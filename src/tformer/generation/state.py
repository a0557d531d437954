"""The model side of decoding: feed the tokens so far, keep the KV cache, the masks and the positions.

Generation only needs next-token logits from a model. `DecoderState` gets them from any model with
`forward(..., cache=...)` and `new_cache()`; a model that also has `encode` (the encoder-decoder) reads the
input as its source, encodes it once and starts its decoder from one start token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.models.outputs import EncoderOutput


def can_generate(model: nn.Module) -> bool:
    """True for models with a decoder that predicts the next token and a KV cache (GPT, EncoderDecoder)."""
    return callable(getattr(model, "new_cache", None))


def is_encoder_decoder(model: nn.Module) -> bool:
    """True for models that encode a source first (EncoderDecoder): their input is not the decoder's prompt."""
    return callable(getattr(model, "encode", None))


class DecoderState:
    """The decoder's input so far, tokens (rows, length), and what the model needs to continue it.

    rows = batch * copies: each input is repeated `copies` times (beams, or samples per input), next to each
    other. With a cache only the tokens not yet seen are fed; without one the whole sequence is, every step.
    """

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, copies: int,
                 use_cache: bool, decoder_start_token_id: int | None = None) -> None:
        self.model = model
        self.cache = model.new_cache() if use_cache else None
        self.cached = 0  # how many of `tokens` the cache already holds
        padded = attention_mask is not None and not bool(attention_mask.all())
        mask = attention_mask if padded else None  # no mask lets attention take its fastest (causal) kernels
        if is_encoder_decoder(model):
            # The encoder runs once; its output is shared by every copy of the input.
            encoded = model.encode(input_ids, mask).last_hidden_state
            self.encoder_outputs: EncoderOutput | None = EncoderOutput(encoded.repeat_interleave(copies, dim=0))
            self.source_mask = mask.repeat_interleave(copies, dim=0) if mask is not None else None
            start = decoder_start_token_id
            if start is None:
                start = model.config.decoder_start_token_id
            self.tokens = input_ids.new_full((input_ids.size(0) * copies, 1), start)
            self.mask: Tensor | None = None  # the decoder's own tokens are never padding
            self.positions: Tensor | None = None
        else:
            self.encoder_outputs, self.source_mask = None, None
            self.tokens = input_ids.repeat_interleave(copies, dim=0)
            self.mask = mask.repeat_interleave(copies, dim=0) if mask is not None else None
            # Left padding: each row's first real token is position 0 (pads are clamped to 0; no one sees them).
            self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0) if self.mask is not None else None

    @property
    def length(self) -> int:
        return self.tokens.size(1)

    def next_logits(self) -> Tensor:
        """float32 logits (rows, vocab) of the token that follows each row."""
        start = self.cached if self.cache is not None else 0
        new = self.tokens[:, start:]
        if self.encoder_outputs is not None:
            out = self.model(attention_mask=self.source_mask, decoder_input_ids=new,
                             encoder_outputs=self.encoder_outputs, cache=self.cache, logits_to_keep=1)
        else:
            positions = self.positions[:, start:] if self.positions is not None else None
            out = self.model(new, attention_mask=self.mask, position_ids=positions, cache=self.cache,
                             logits_to_keep=1)
        self.cached = self.length
        return out.logits[:, -1].float()

    def append(self, next_tokens: Tensor, parents: Tensor | None = None) -> None:
        """Extend each row by one token (rows,); beam search first names each row's parent row (rows,)."""
        if parents is not None:
            self.reorder(parents)
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        if self.mask is not None and self.positions is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.size(0), 1)], dim=1)
            self.positions = torch.cat([self.positions, self.positions[:, -1:] + 1], dim=1)

    def reorder(self, rows: Tensor) -> None:
        """Keep the rows named by `rows` (rows,): the tokens, masks and cache of each surviving beam's parent."""
        self.tokens = self.tokens.index_select(0, rows)
        if self.mask is not None and self.positions is not None:
            self.mask = self.mask.index_select(0, rows)
            self.positions = self.positions.index_select(0, rows)
        if self.cache is not None:
            self.cache.reorder(rows)
