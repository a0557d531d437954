"""Logits processors: repetition penalty, no-repeat n-grams, bad words, minimum length, forced first/last tokens.

Each one is `transformers`' processor of the same name, in the order `_get_logits_processor` applies them
(repetition penalty, no-repeat n-grams, bad words, min_length, min_new_tokens, forced BOS, forced EOS), and reads
the same thing: the decoder's tokens so far (rows, length) and the next-token scores (rows, vocab). Greedy decoding
and sampling apply them to the logits, before the sampling filters; beam search to the log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Processor = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class LogitsControls:
    """What the processors need: the settings (neutral values switch a processor off) and the decoding's shape."""

    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: Sequence[Sequence[int]] | None = None
    min_length: int = 0  # of the whole sequence, prompt (or decoder start token) included, as transformers counts
    min_new_tokens: int = 0
    forced_bos_token_id: int | None = None
    forced_eos_token_id: Sequence[int] | None = None

    def is_neutral(self) -> bool:
        """True when no processor applies (decoding then skips them altogether)."""
        return (self.repetition_penalty == 1.0 and not self.no_repeat_ngram_size and not self.bad_words_ids
                and not self.min_length and not self.min_new_tokens and self.forced_bos_token_id is None
                and self.forced_eos_token_id is None)


def check_controls(controls: LogitsControls, vocab_size: int, max_new_tokens: int) -> None:
    """Raise a ValueError naming the setting when a processor's value cannot work."""
    penalty = controls.repetition_penalty
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not penalty > 0:
        raise ValueError(f"repetition_penalty={penalty!r} must be a number > 0 (1.0 is no penalty, above 1 "
                         "makes repeated tokens less likely)")
    for name in ("no_repeat_ngram_size", "min_length", "min_new_tokens"):
        value = getattr(controls, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} must be an integer >= 0 (0 switches it off)")
    if controls.min_new_tokens > max_new_tokens:
        raise ValueError(f"min_new_tokens={controls.min_new_tokens} is more than max_new_tokens={max_new_tokens}; "
                         "lower min_new_tokens or raise max_new_tokens")
    named = [("forced_bos_token_id", controls.forced_bos_token_id)] if controls.forced_bos_token_id is not None else []
    named += [("forced_eos_token_id", token) for token in controls.forced_eos_token_id or []]
    for name, token in named:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise ValueError(f"{name}={token!r} is outside the vocabulary [0, {vocab_size})")
    for word in controls.bad_words_ids or []:
        if not isinstance(word, list | tuple) or not word or any(
                isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size for t in word):
            raise ValueError(f"bad_words_ids entry {word!r} must be a non-empty list of token ids in "
                             f"[0, {vocab_size})")


def build_processors(controls: LogitsControls, *, prompt_len: int, max_new_tokens: int, eos: Sequence[int],
                     ignored_prefix: Tensor | None) -> list[Processor]:
    """The processors `controls` switch on, in transformers' order.

    prompt_len: the decoder's length before the first new token (the prompt, or 1: the decoder start token);
    eos: the end tokens (min_length, min_new_tokens and bad words need them; without them those do nothing);
    ignored_prefix: per row, how many leading tokens the repetition penalty skips (left padding), or None.
    """
    processors: list[Processor] = []
    if controls.repetition_penalty != 1.0:
        processors.append(_repetition_penalty(float(controls.repetition_penalty), ignored_prefix))
    if controls.no_repeat_ngram_size:
        processors.append(_no_repeat_ngram(controls.no_repeat_ngram_size))
    if controls.bad_words_ids:
        words = [list(w) for w in controls.bad_words_ids if not (len(w) == 1 and w[0] in eos)]
        if words:
            processors.append(_bad_words(words))
    if eos and controls.min_length:
        processors.append(_ban_end_while_shorter(controls.min_length, eos))
    if eos and controls.min_new_tokens:
        processors.append(_ban_end_while_shorter(prompt_len + controls.min_new_tokens, eos))
    if controls.forced_bos_token_id is not None:
        processors.append(_force_at_length(1, [controls.forced_bos_token_id]))
    if controls.forced_eos_token_id is not None:
        processors.append(_force_at_length(prompt_len + max_new_tokens - 1, list(controls.forced_eos_token_id)))
    return processors


def apply_processors(processors: list[Processor], tokens: Tensor, scores: Tensor) -> Tensor:
    for process in processors:
        scores = process(tokens, scores)
    return scores


def _repetition_penalty(penalty: float, ignored_prefix: Tensor | None) -> Processor:
    """Scores of tokens already in the sequence: divided by `penalty` where positive, multiplied where negative."""

    def process(tokens: Tensor, scores: Tensor) -> Tensor:
        vocab = scores.size(-1)
        if ignored_prefix is not None:  # left padding is not part of the text
            positions = torch.arange(tokens.size(1), device=tokens.device)
            tokens = tokens.masked_fill(positions[None, :] < ignored_prefix[:, None], vocab)
        padded = torch.nn.functional.pad(scores, (0, 1))  # column `vocab` absorbs the skipped positions
        seen = padded.gather(1, tokens)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return padded.scatter(1, tokens, seen)[:, :vocab]

    return process


def _no_repeat_ngram(size: int) -> Processor:
    """Ban each token that would complete an n-gram of `size` tokens already in the sequence."""

    def process(tokens: Tensor, scores: Tensor) -> Tensor:
        length = tokens.size(1)
        if length < size:
            return scores
        prefix = tokens[:, length + 1 - size:]  # the last size - 1 tokens: what the next n-gram starts with
        windows = tokens.unfold(dimension=1, size=size, step=1)
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        vocab = scores.size(-1)
        banned = scores.new_zeros((scores.size(0), vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
        return scores.masked_fill(banned[:, :vocab], float("-inf"))

    return process


def _bad_words(words: list[list[int]]) -> Processor:
    """Never choose a bad word's last token after the rest of it (a one-token word: never at all)."""
    singles = [w[0] for w in words if len(w) == 1]
    longer = [w for w in words if len(w) > 1]

    def process(tokens: Tensor, scores: Tensor) -> Tensor:
        banned = torch.zeros_like(scores, dtype=torch.bool)
        banned[:, singles] = True
        for word in longer:
            prefix = torch.tensor(word[:-1], device=tokens.device)
            if prefix.numel() <= tokens.size(1):
                banned[:, word[-1]] |= (tokens[:, -prefix.numel():] == prefix).all(dim=-1)
        return scores.masked_fill(banned, float("-inf"))

    return process


def _ban_end_while_shorter(min_length: int, eos: Sequence[int]) -> Processor:
    """No end token while the sequence (prompt included) is shorter than min_length."""
    end = list(eos)

    def process(tokens: Tensor, scores: Tensor) -> Tensor:
        if tokens.size(1) < min_length:
            scores = scores.clone()
            scores[:, end] = float("-inf")
        return scores

    return process


def _force_at_length(length: int, forced: list[int]) -> Processor:
    """When the sequence is `length` tokens long, only the `forced` tokens may come next (score 0, the rest -inf)."""

    def process(tokens: Tensor, scores: Tensor) -> Tensor:
        if tokens.size(1) != length:
            return scores
        scores = torch.full_like(scores, float("-inf"))
        scores[:, forced] = 0
        return scores

    return process
