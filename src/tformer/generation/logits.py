"""Sampling's filters on next-token logits: temperature, top-k and top-p (nucleus), in Hugging Face's order."""

from __future__ import annotations

import torch
from torch import Tensor


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a ValueError naming the value when temperature, top_k or top_p cannot define a distribution."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature >= 0:
        raise ValueError(f"temperature={temperature!r} must be a number >= 0 (0 means greedy decoding)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k={top_k!r} must be a positive integer, or None / 0 to keep every token")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 <= top_p <= 1):
        raise ValueError(f"top_p={top_p!r} must be a probability in [0, 1] (1 or None keeps every token)")


def filter_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
    min_tokens_to_keep: int = 1,
) -> Tensor:
    """Sampling: logits (..., vocab) -> logits (..., vocab) divided by the temperature, with -inf on every token
    outside the top_k largest and outside the nucleus (the fewest most-likely tokens holding top_p of the mass).

    Same order and ties as `transformers`' TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper: tokens
    tied with the k-th are kept, and the most likely `min_tokens_to_keep` tokens always survive (so top_p=0 keeps
    the argmax). temperature=0 is the limit of greedy decoding: only the argmax survives.
    """
    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        return logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True), float("-inf"))
    if temperature != 1.0:
        logits = logits / temperature
    if top_k:
        k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth_largest = torch.topk(logits, k).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - top_p  # the unlikely tail whose mass stays within 1 - top_p
        remove[..., -min_tokens_to_keep:] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits
