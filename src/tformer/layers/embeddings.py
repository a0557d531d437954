"""Input embeddings: token vectors (optionally scaled by sqrt(d_model)) + positions (+ token types), then
an optional LayerNorm and dropout."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tformer.layers.positions import LearnedPositions, SinusoidalPositions


class Embeddings(nn.Module):
    """Token + position (+ token-type) embeddings: ids (batch, length) -> (batch, length, d_model).

    `token` may be shared with another Embeddings (encoder and decoder) and with the output projection.
    """

    def __init__(self, token: nn.Embedding, positions: LearnedPositions | SinusoidalPositions, *,
                 type_vocab_size: int = 0, scale: bool = False, norm: nn.LayerNorm | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        d_model = token.embedding_dim
        self.token = token
        self.positions = positions
        self.token_type = nn.Embedding(type_vocab_size, d_model) if type_vocab_size else None
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, position_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        x = self.token(input_ids)
        if self.scale != 1.0:
            x = x * self.scale
        x = x + self.positions(position_ids)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)
