"""What several `tformer` commands share, so that no command imports another command's module."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tformer.training.options import OptionError

if TYPE_CHECKING:  # imported by the functions when they run (`tformer --help` stays light)
    from tformer.models import TransformerModel
    from tformer.tokenization import Tokenizer


def split_overrides(extra: list[str]) -> list[str]:
    """The `--key.sub=value` words argparse left over; anything else is a one-line error."""
    for word in extra:
        if not (word.startswith("--") and "=" in word):
            raise OptionError(f"unrecognised argument {word!r}; recipe options are written --section.key=value")
    return extra


def load_model_and_tokenizer(folder: str, command: str) -> tuple[TransformerModel, Tokenizer]:
    """The model of a Hugging Face style folder (config.json, weights) and the tokenizer.json beside it; a Hub
    name ("gpt2") is found in the Hugging Face cache."""
    from tformer.interop.huggingface import from_pretrained
    from tformer.interop.model_folder import find_model_folder
    from tformer.tokenization import Tokenizer

    path = find_model_folder(folder)  # a name resolved, a file / run folder / missing config.json refused
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{str(tokenizer_file)!r} is missing: {command} needs the tokenizer the model was "
                                "trained with in its folder (write it with Tokenizer.save(folder))")
    model = from_pretrained(path)
    return model, Tokenizer.from_file(tokenizer_file)


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Warnings (an ignored flag...) as one line on stderr: `tformer CMD: warning: ...`."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"tformer {command}: warning: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
