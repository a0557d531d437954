"""The passkey probe: a long stretch of filler with a key stated once early and asked for at the end.

Mohtashami & Jaggi 2023 ("Landmark Attention") hide "The pass key is 71432. Remember it." in filler text and
ask for it at the end; a model that answers must carry information across the whole sequence. Issue 17 uses
it to show what each attention pattern can reach: full attention reaches every position, local attention
(blocks of b seeing `look_back` blocks back) cannot see a key further back than its window, and LMLML reaches it
through the memory-compressed layers.

Design, so that a tiny model learns it on a CPU in minutes:

* A word-level vocabulary of its own (`VOCABULARY`, 136 tokens): each phrase of the probe ("the pass key
  is", "remember it .", "what is the pass key ?") is ONE token, and the filler is drawn uniformly from 52 plain
  words with no digits among them. A row reads, through `render`:
  `"house blue ... the pass key is 7 1 4 3 2 remember it . ... what is the pass key ? 7 1 4 3 2"`.
* A digit token carries its place in the key (digit d at place j is its own token: 10 per place, up to
  `MAX_DIGITS` places; `render` writes them as plain digits). Fetching the answer's place j is then ONE content
  lookup: the token before it (the question, or the answer's place j - 1) says which place comes next, and
  attention finds the key's token of that place wherever it stands and copies its digit. No counting of
  positions and no two-layer induction circuit for a tiny model to discover first: a 400-step run at 64
  tokens with plain digit tokens (the same digit token at every place) stayed at chance (11 %).
* The filler is random, so nothing in it can be predicted and no loss is spent on it: `labels` count the
  answer's digits only (the loss, and the accuracy, are on the key).
* The key starts at a random position within the first `early` fraction of the row (default 0.2), so in a row
  of N tokens it stands at least (1 - early) * N - 2 * digits tokens before the question.
* Rows of any length from `min_length(digits)` up: a runner can train on short rows first and double the
  length (a curriculum), since the task is the same at every length.

`passkey_batch` is deterministic given its `torch.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = -100  # tformer.losses.IGNORE_INDEX, written here so the data layer does not import the losses

PAD, KEY, REMEMBER, ASK = "<pad>", "the pass key is", "remember it .", "what is the pass key ?"
MAX_DIGITS = 8
DIGITS = tuple(f"{d}" for _ in range(MAX_DIGITS) for d in range(10))  # place j, digit d: DIGITS[10 * j + d]
FILLER = tuple(
    "the grass is green sky blue sun yellow here we go there and back again a house stands by river old tree "
    "wind blows over hill small bird sings in morning light road leads far away people walk slowly through town "
    "market opens early bread warm evening falls quiet night stars shine".split())
VOCABULARY: tuple[str, ...] = (PAD, KEY, REMEMBER, ASK, *DIGITS, *dict.fromkeys(FILLER))
PAD_ID, KEY_ID, REMEMBER_ID, ASK_ID = 0, 1, 2, 3
FIRST_DIGIT_ID = 4
FILLER_IDS = tuple(range(FIRST_DIGIT_ID + len(DIGITS), len(VOCABULARY)))


def digit_id(place: int | Tensor, digit: int | Tensor) -> int | Tensor:
    """The token of `digit` (0-9) at `place` (0 = the key's first digit)."""
    return FIRST_DIGIT_ID + 10 * place + digit


def min_length(digits: int) -> int:
    """The shortest row: the key's statement (2 + digits tokens), the question and the answer (1 + digits)."""
    return 2 * digits + 3


@dataclass(frozen=True)
class PasskeyTask:
    """The probe's shape: rows of `length` tokens, a key of `digits` digits stated within the first `early`."""

    length: int
    digits: int = 5
    early: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= MAX_DIGITS:
            raise ValueError(f"digits={self.digits} must be in [1, {MAX_DIGITS}] (the vocabulary's key places)")
        if not 0.0 <= self.early <= 1.0:
            raise ValueError(f"early={self.early} must be in [0, 1] (a fraction of the row)")
        if self.length < min_length(self.digits):
            raise ValueError(f"length={self.length} cannot hold a {self.digits}-digit key, its question and its "
                             f"answer; use length >= {min_length(self.digits)}")

    @property
    def answer_start(self) -> int:
        """Position of the answer's first digit (the question stands just before it)."""
        return self.length - self.digits


def passkey_batch(task: PasskeyTask, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Rows of the probe: input_ids and labels (batch, length), keys (batch, digits) as 0-9, key_start (batch,).

    labels hold the answer's digit ids at their own positions and IGNORE_INDEX elsewhere (tformer's GPT shifts
    them inside, as for any causal LM), so the loss and the accuracy are on the key alone.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    n, k = task.length, task.digits
    filler = torch.tensor(FILLER_IDS)
    ids = filler[torch.randint(len(FILLER_IDS), (batch_size, n), generator=generator)]
    keys = torch.randint(10, (batch_size, k), generator=generator)
    digits = digit_id(torch.arange(k), keys)
    latest = n - (k + 1) - (k + 2)  # the statement must end before the question starts
    starts = (torch.rand(batch_size, generator=generator) * (min(int(task.early * n), latest) + 1)).long()
    starts = starts.clamp(max=latest)
    rows = torch.arange(batch_size)[:, None]
    ids[rows, starts[:, None]] = KEY_ID
    ids[rows, starts[:, None] + 1 + torch.arange(k)] = digits
    ids[rows, starts[:, None] + 1 + k] = REMEMBER_ID
    ids[:, task.answer_start - 1] = ASK_ID
    ids[:, task.answer_start:] = digits
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, task.answer_start:] = digits
    return {"input_ids": ids, "labels": labels, "keys": keys, "key_start": starts}


def answer_digits(logits: Tensor, task: PasskeyTask) -> Tensor:
    """The digits (batch, digits) a model's logits (batch, length, vocab) predict for the answer, teacher-forced.

    Greedy decoding writes the key exactly when every one of these is right, so exact match on them is the
    greedy exact match.
    """
    at = logits[:, task.answer_start - 1: task.length - 1, FIRST_DIGIT_ID: FIRST_DIGIT_ID + 10 * task.digits]
    places = at.unflatten(-1, (task.digits, 10))  # (batch, answer place, key place, digit)
    return places.diagonal(dim1=1, dim2=2).argmax(-2)  # the answer's place j read among place j's digits


def render(ids: Tensor | list[int]) -> str:
    """A row as text: its tokens joined by spaces."""
    values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    bad = [v for v in values if not 0 <= v < len(VOCABULARY)]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the passkey vocabulary [0, {len(VOCABULARY)})")
    return " ".join(VOCABULARY[v] for v in values)
