"""Checks a fine-tune runs before its first step, so a run that cannot finish stops before it writes anything.

* `check_tokenizer_covers`: a tokenizer without an unknown token (a char-level one) cannot encode a character it
  never saw; the `tokenizers` library says only "WordLevel error: Missing [UNK] token". Found here, with the
  character, the split, and the kind of tokenizer that is needed.
* `check_dev_encodes`: every dev example is encoded once as scoring will (QA windows, NER pieces, the batches of
  the sentence tasks), so a SQuAD question longer than the window is found before training, not after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from tformer.tasks.encoding import TaskEncoder
from tformer.tokenization import Tokenizer


def _strings(value: Any) -> Iterator[str]:
    """Every string in an example (its texts, choices, words), whatever the example's kind."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _strings(getattr(value, item.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _encodes(tokenizer: Tokenizer, text: str) -> bool:
    try:
        tokenizer.encode(text, add_special_tokens=False)
    except Exception:  # noqa: BLE001 - the Rust side raises a bare Exception
        return False
    return True


def check_tokenizer_covers(tokenizer: Tokenizer, splits: dict[str, Sequence[Any]], task: str, model: str) -> None:
    """Raise a one-line ValueError when the tokenizer has no unknown token and a character of a split is missing
    from its vocabulary (checked on the set of characters, so it costs one pass over the text)."""
    if tokenizer.unk_token_id is not None:
        return
    for split, examples in splits.items():
        characters = sorted({char for example in examples for text in _strings(example) for char in text})
        if _encodes(tokenizer, "".join(characters)):
            continue
        missing = [char for char in characters if not _encodes(tokenizer, char)]
        shown = " ".join(repr(char) for char in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"the tokenizer of {model} ({tokenizer.kind}-level, without [UNK]) cannot encode "
                         f"{len(missing)} character(s) of {task} {split}: {shown}; fine-tune a model whose tokenizer "
                         "covers any text: byte-level bpe, or word / wordpiece (they have [UNK])")


def check_dev_encodes(encoder: TaskEncoder, dev: Sequence[Any], batch_size: int) -> None:
    """Encode the dev examples as scoring will; a ValueError (too long for the window, ...) names the dev split."""
    try:
        items = encoder.items(dev)
        for indices in encoder.chunks_by_size(items, batch_size, progress=False):
            encoder.batch([items[i] for i in indices], labels=False)
    except ValueError as error:
        raise ValueError(f"{encoder.task.name} dev cannot be encoded, so it could not be scored after training: "
                         f"{error}") from None
