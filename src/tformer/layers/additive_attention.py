"""Additive attention (Bahdanau, Cho and Bengio 2014, arXiv 1409.0473, Appendix A.1.2): the alignment model of
the first attention paper, which notes 002 calls "the same as in the 2014 paper" for cross-attention.

    e_ij     = v^T tanh(W s_{i-1} + U h_j)      the score of source position j for target step i
    alpha_ij = exp(e_ij) / sum_k exp(e_ik)       softmax over the source positions j (padding left out)
    c_i      = sum_j alpha_ij h_j                the context vector

A small feed-forward network scores each (query, key) pair where scaled dot-product attention
(`layers/attention.py`) takes their dot product. U h_j does not depend on i: `project_keys` computes it once
per source (a decoding cache keeps it, `RecurrentCache.cross`), and each step adds W s_{i-1} to it.
Masks follow `layers/attention.py`: True = a real token that may be attended to.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AdditiveAttention(nn.Module):
    """Bahdanau's alignment model: query s (batch, query_size), memory h (batch, source, key_size) -> context
    (batch, key_size) and weights alpha (batch, source).

    `query_proj` is W (alignment x query), `key_proj` is U (alignment x key), `score` is v (1 x alignment); the
    paper has no biases in them.
    """

    def __init__(self, query_size: int, key_size: int, alignment_size: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_size, alignment_size, bias=False)
        self.key_proj = nn.Linear(key_size, alignment_size, bias=False)
        self.score = nn.Linear(alignment_size, 1, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        """U h_j for every source position: (batch, source, key_size) -> (batch, source, alignment_size)."""
        return self.key_proj(memory)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """e_ij = v^T tanh(W s + U h_j): query (batch, query_size), projected keys (batch, source, alignment) ->
        (batch, source)."""
        return self.score(torch.tanh(self.query_proj(query)[:, None, :] + keys)).squeeze(-1)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query s_{i-1} (batch, query_size); keys = project_keys(memory) (batch, source, alignment); memory h
        (batch, source, key_size); mask (batch, source), True / 1 = real token, None = no padding.

        Returns (context (batch, key_size), weights (batch, source)). Pads get weight 0; a row with no real token
        gets all-zero weights and a zero context (never NaN, in the output or the gradients).
        """
        scores = self.scores(query, keys)
        if mask is None:
            weights = torch.softmax(scores, dim=-1)
        else:
            mask = mask.bool()
            # A fully padded row is a softmax over all -inf, NaN: the second masked_fill sets it to 0, and in the
            # backward pass the first one stops the NaN before it reaches a score.
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).masked_fill(~mask, 0.0)
        context = torch.bmm(weights[:, None, :], memory).squeeze(1)
        return context, weights
