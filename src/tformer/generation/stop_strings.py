"""Stop strings: a sequence is finished once the text of its tokens has just produced one of the given strings.

`transformers`' StopStringCriteria, with strings instead of its tensor tables: each token's text is what the
tokenizer decodes for that token alone (special tokens included), and a stop string matches when it lies in the
text of the sequence and ends inside the last token, starting where that token starts or before: for "stop",
["st", "op"], ["stop"], ["st", "opera"] and ["las", "topper"] match; ["stop", "at"] and ["xstop"] do not.
The sequence keeps the tokens that made the string (nothing is cut), as in transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

LOOKBACK_SLACK = 16  # tokens read beyond the longest stop string's length, for tokens whose text is empty


class Decodes(Protocol):
    """What stop strings need of a tokenizer: the text of a list of ids (tformer's Tokenizer has it)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


def check_stop_strings(stop_strings: Sequence[str] | str | None, tokenizer: Decodes | None) -> list[str]:
    """The stop strings as a list; a ValueError naming the value when one is empty or there is no tokenizer."""
    if stop_strings is None:
        return []
    strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
    for text in strings:
        if not isinstance(text, str) or not text:
            raise ValueError(f"stop string {text!r} must be a non-empty string")
    if strings and tokenizer is None:
        raise ValueError(f"stop_strings={strings!r} need the model's tokenizer to read the text: pass "
                         "tokenizer=Tokenizer.from_file(folder / 'tokenizer.json')")
    return strings


class StopStrings:
    """Callable on the tokens so far (rows, length): True for each row whose last token completes a stop string."""

    def __init__(self, stop_strings: Sequence[str], tokenizer: Decodes) -> None:
        self.strings = list(stop_strings)
        self.tokenizer = tokenizer
        self.longest = max(len(s) for s in self.strings)
        self.texts: dict[int, str] = {}

    def _text(self, token: int) -> str:
        if token not in self.texts:
            try:
                self.texts[token] = self.tokenizer.decode([token], skip_special_tokens=False)
            except ValueError:  # an id the model has but the tokenizer does not (a padded vocabulary)
                self.texts[token] = ""
        return self.texts[token]

    def _row_matches(self, row: list[int]) -> bool:
        last = self._text(row[-1])
        if not last:
            return False
        before: list[str] = []
        length = 0
        for token in reversed(row[:-1]):  # enough text before the last token for the longest string
            if length >= self.longest - 1:
                break
            before.append(self._text(token))
            length += len(before[-1])
        head = "".join(reversed(before))
        text = head + last
        for stop in self.strings:
            for overlap in range(1, min(len(stop), len(last)) + 1):  # the stop string's end inside `last`
                start = len(head) + overlap - len(stop)
                if start >= 0 and text.startswith(stop, start):
                    return True
        return False

    def __call__(self, tokens: Tensor) -> Tensor:
        rows = tokens[:, -(self.longest + LOOKBACK_SLACK):].tolist()  # every token's text has >= 1 character, mostly
        return torch.tensor([self._row_matches(row) for row in rows], dtype=torch.bool, device=tokens.device)
