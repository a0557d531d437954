"""The perplexity of a language model on a text (seed: GPT-2 tested "predominately" as a zero-shot language model),
with a sliding window as transformers' perplexity guide computes it, and the pseudo-perplexity of a masked LM
(Salazar et al. 2020); each also in bits per byte and bits per character.

**Causal** (the gpt family: GPT-1, GPT-2, the T-D, attention-pattern models): the text is tokenized once, whole,
without special tokens (no BOS or EOS: GPT-2's tokenizer adds none, `tformer prepare` neither), as the guide does.
Windows of at most `max_length` tokens begin at 0, stride, 2 * stride, ... up to the first that reaches the end.
In each window only the tokens no earlier window scored are counted, each predicted from the tokens before it in
the window; the others are context (the guide's labels -100). The text's first token is never scored (nothing comes
before it). So with stride < max_length every token after the first is scored once, with at least max_length -
stride tokens of context; stride = max_length gives non-overlapping windows (each window's first token is context only);
stride = 1 gives each token max_length - 1 tokens of context (all before it near the start). Windows of one shape
are batched, `batch_size` per forward.

**Masked** (`mlm=True`, a bert model with its masked-LM head): the tokens are cut into blocks of max_length - 2,
each read as [CLS] block [SEP]; each token is replaced by [MASK] in its own copy of its block and scored by
log p(token | the rest of the block). Their sum is the pseudo-log-likelihood, exp(-PLL / tokens) the
pseudo-perplexity; `batch_size` masked copies per forward.

**Text**: files are read as `tformer prepare` reads them (UTF-8, LF line ends, a Gutenberg book's body only unless
strip_gutenberg=False) and joined as it joins them, with one empty line between two files: the guide's
"\\n\\n".join for files that do not end with a newline, and for a training run's files the very text it was
prepared from. A relative name is looked for here, then under the data folder (`data`, else $TFORMER_DATA, else
../shared/data), as recipes find theirs: "wikitext-2/test.txt.gz", "gutenberg/*.txt.gz". `val_fraction` keeps the
last part of the characters, the held-out split of `tformer prepare` and of the recipes' data.val_fraction.

bits per byte = total NLL / ln 2 / UTF-8 bytes of the text scored, bits per character the same per code point:
unlike the loss they do not depend on the tokenizer, so models with different vocabularies compare. The text scored
is the text less the tokens that are context only (the first; with stride = max_length each window's first), found
by the tokenizer's character offsets: dividing by the whole text would lower bits per byte as fewer tokens are scored.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm import tqdm

from tformer.data.prepare import join_texts, read_text, split_train_val
from tformer.evaluation.continuation_scores import shortest_input
from tformer.interop.huggingface import from_pretrained
from tformer.interop.model_folder import find_model_folder
from tformer.models import BERT, GPT, TransformerModel
from tformer.tokenization import Tokenizer
from tformer.training.distributed import pick_device
from tformer.training.recipe import data_root, find_data_files

DEFAULT_BATCH_SIZE = 8
Window = tuple[int, int, int]  # (begin, first scored, end): ids[begin:end] is read, ids[first:end] scored


@dataclass(frozen=True)
class LMEvaluation:
    """A language model's score on one text: the total NLL (nats) of `tokens` scored tokens and the text's size."""

    nll: float  # sum of -log p(token | context) over the scored tokens (mlm: minus the pseudo-log-likelihood)
    tokens: int
    bytes: int  # UTF-8 bytes of the text scored: the text less the tokens that are context only
    chars: int  # its characters (code points)
    text_bytes: int  # the whole text's
    text_chars: int
    seconds: float  # scoring only: the forwards, not loading or tokenizing
    windows: int  # forwards' windows (mlm: blocks)
    max_length: int
    stride: int | None  # None for mlm
    mlm: bool

    @property
    def loss(self) -> float:
        """Mean NLL per scored token, nats."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < math.log(sys.float_info.max) else math.inf

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes

    @property
    def bits_per_char(self) -> float:
        return self.nll / math.log(2) / self.chars

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Every figure, for `--json`: loss, perplexity, bits_per_byte, bits_per_char, tokens, bytes, chars, ..."""
        return {"loss": self.loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte,
                "bits_per_char": self.bits_per_char, "tokens": self.tokens, "bytes": self.bytes, "chars": self.chars,
                "text_bytes": self.text_bytes, "text_chars": self.text_chars, "tokens_per_s": self.tokens_per_s,
                "seconds": self.seconds, "nll": self.nll, "windows": self.windows, "max_length": self.max_length,
                "stride": self.stride, "mlm": self.mlm}


def evaluate_lm(model: TransformerModel | str | PathLike[str],
                inputs: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None, *, text: str | None = None,
                tokenizer: Tokenizer | None = None, max_length: int | None = None, stride: int | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, mlm: bool = False, device: str | torch.device | None = None,
                threads: int | None = None, data: str | PathLike[str] | None = None, strip_gutenberg: bool = True,
                val_fraction: float | None = None, progress: bool | None = None) -> LMEvaluation:
    """Score `model` (a model folder, a `tformer train` run folder, or a model with its `tokenizer`) on the text
    files `inputs` (or the string `text`): see the module docstring for the windows, the text and the figures.

    max_length defaults to the model's max_positions, stride to max_length // 2 (mlm: no stride). `device` is as
    the other commands take it (default: cuda when there is one); `progress=None` shows a tqdm bar on stderr when
    it is a terminal.
    """
    _check_options(stride, max_length, batch_size, threads, val_fraction, mlm)
    source = _read_inputs(inputs, text, data, strip_gutenberg, val_fraction)
    given = isinstance(model, TransformerModel)
    name = "the model" if given else str(model)
    if given and tokenizer is None:
        raise ValueError("evaluate_lm(model, ...) with a model object needs its tokenizer=...; or pass the model "
                         "folder, which holds its tokenizer.json")
    if not isinstance(model, TransformerModel):
        model, tokenizer, _ = load_language_model(model, tokenizer)
    assert tokenizer is not None
    check_language_model(model, mlm, name)
    max_length, stride = _window(model, max_length, stride, mlm)
    ids, offsets = _token_ids(tokenizer, source, model, mlm)
    if threads is not None:
        torch.set_num_threads(threads)
    if device is not None or not given:  # a model passed in stays where it is unless a device is named
        model.to(_device(device))
    specials = _mask_specials(tokenizer, name) if mlm else None
    was_training = model.training
    model.eval()
    try:
        began = time.perf_counter()
        nll, tokens, windows, context = _score(model, ids, specials, max_length, stride, batch_size, _show(progress))
        seconds = time.perf_counter() - began
    finally:
        model.train(was_training)
    chars, size = _text_less(source, offsets, context)
    return LMEvaluation(nll=nll, tokens=tokens, bytes=size, chars=chars, text_bytes=len(source.encode("utf-8")),
                        text_chars=len(source), seconds=seconds, windows=windows, max_length=max_length,
                        stride=stride, mlm=mlm)


def _score(model: TransformerModel, ids: Tensor, specials: tuple[int, int, int] | None, max_length: int,
           stride: int | None, batch_size: int, progress: bool) -> tuple[float, int, int, list[int]]:
    """NLL, tokens scored, windows (blocks) read, and the tokens that were context only."""
    if specials is not None:
        assert isinstance(model, BERT)
        nll, tokens, blocks = masked_nll(model, ids, specials, max_length, batch_size, progress)
        return nll, tokens, blocks, []
    assert stride is not None
    windows = widened_windows(sliding_windows(len(ids), max_length, stride), len(ids), max_length,
                              shortest_input(model))
    nll, tokens = causal_nll(model, ids, windows, batch_size, progress)
    return nll, tokens, len(windows), unscored_tokens(len(ids), windows)


def load_language_model(path: str | PathLike[str], tokenizer: Tokenizer | None = None
                        ) -> tuple[TransformerModel, Tokenizer, Path]:
    """The model of a folder (or Hub name), the tokenizer.json beside it and the folder found; a `tformer train`
    run folder means the model it ended with, RUN/final."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").exists() and (folder / "final" / "config.json").is_file():
        path = folder / "final"
    found = find_model_folder(path)  # a Hub name resolved; a file, a missing config.json, an unfinished run refused
    if tokenizer is None:
        tokenizer_file = found / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"{str(tokenizer_file)!r} is missing: scoring text needs the tokenizer the model "
                                    "was trained with in its folder (write it with Tokenizer.save(folder))")
        tokenizer = Tokenizer.from_file(tokenizer_file)
    return from_pretrained(found), tokenizer, found


def check_language_model(model: TransformerModel, mlm: bool, name: str = "the model") -> None:
    """A causal LM (gpt family) for the perplexity; with `mlm`, a bert model with its masked-LM head."""
    family = model.config.family
    if model.config.task is not None:
        raise ValueError(f"{name} holds a {family} model with a {model.config.task} head; evaluate-lm scores a "
                         "language model: pass the pre-trained model folder it was fine-tuned from")
    if mlm:
        if isinstance(model, BERT) and model.mlm_head is not None:
            return
        if isinstance(model, BERT):
            raise ValueError(f"{name} holds a bert encoder without the masked-LM head (a BertModel or sentence "
                             "encoder such as MiniLM), so it cannot predict a masked token; --mlm needs a folder "
                             "with the pre-training heads (BertForPreTraining, BertForMaskedLM weights)")
        raise ValueError(f"--mlm (mlm=True) is the pseudo-perplexity of a masked LM (bert), but {name} holds a "
                         f"{family} model; leave out --mlm" + (" for its perplexity" if isinstance(model, GPT) else ""))
    if isinstance(model, GPT):
        return
    if isinstance(model, BERT):
        raise ValueError(f"{name} holds a bert model, an encoder that reads the whole text at once and so has no "
                         "perplexity; pass --mlm (mlm=True) for its pseudo-perplexity (each token masked in turn, "
                         "Salazar et al. 2020)")
    raise ValueError(f"{name} holds an {family} model, which writes a target for a source; evaluate-lm scores a "
                     "language model (gpt family: GPT-1, GPT-2, T-D) or, with --mlm, a bert model")


# ---------------------------------------------------------------------------------------------- causal LM


def sliding_windows(n_tokens: int, max_length: int, stride: int) -> list[Window]:
    """(begin, first scored, end) of each window over `n_tokens` ids, as transformers' perplexity guide walks
    them: windows begin at 0, stride, ...; each scores the tokens no earlier window scored (a window that would
    score none, a last one-token window after non-overlapping ones, is left out)."""
    windows, scored_to = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        first = max(scored_to, begin + 1)  # a window's first token has nothing before it in the window
        if first < end:
            windows.append((begin, first, end))
        scored_to = end
        if end == n_tokens:
            break
    return windows


def widened_windows(windows: list[Window], n_tokens: int, max_length: int, shortest: int) -> list[Window]:
    """Each window begun early enough to hold `shortest` tokens (more context, the same tokens scored), so that a
    short last window still goes through a T-DMCA's compressed layers; too short a text or window is one line."""
    if shortest <= 1:
        return windows
    if max_length < shortest or n_tokens < shortest:
        what = f"--max-length={max_length}" if max_length < shortest else f"the text ({n_tokens} tokens)"
        raise ValueError(f"{what} is shorter than the model's compression kernel {shortest}: a memory-compressed "
                         f"layer reads whole groups of {shortest} tokens; give at least {shortest}")
    return [(min(begin, max(0, end - shortest)), first, end) for begin, first, end in windows]


def unscored_tokens(n_tokens: int, windows: Sequence[Window]) -> list[int]:
    """The tokens no window scores, context only: the first, and with stride = max_length each window's first."""
    context, scored_to = [], 0
    for _, first, end in windows:
        context.extend(range(scored_to, first))
        scored_to = end
    context.extend(range(scored_to, n_tokens))
    return context


@torch.inference_mode()
def causal_nll(model: TransformerModel, ids: Tensor, windows: Sequence[Window], batch_size: int,
               progress: bool = False) -> tuple[float, int]:
    """The summed NLL (nats) of the tokens `windows` (of `sliding_windows`) score, and their number.

    ids: (n_tokens,). Windows of one length that score as many tokens go through one forward, `batch_size` at a
    time; only the logits of the scored positions are computed (`logits_to_keep`)."""
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    with _bar(sum(end - first for _, first, end in windows), progress) as bar:
        for batch in _same_shape_batches(windows, batch_size, lambda w: (w[2] - w[0], w[2] - w[1])):
            scored = batch[0][2] - batch[0][1]
            x = torch.stack([ids[begin:end] for begin, _, end in batch]).to(device)
            logits = model(x, logits_to_keep=scored + 1).logits[:, :-1]  # the logits at i predict token i + 1
            targets = x[:, -scored:]
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
            bar.update(targets.numel())
    return float(nll), sum(end - first for _, first, end in windows)


# ---------------------------------------------------------------------------------------------- masked LM


@torch.inference_mode()
def masked_nll(model: BERT, ids: Tensor, specials: tuple[int, int, int], max_length: int, batch_size: int,
               progress: bool = False) -> tuple[float, int, int]:
    """Minus the pseudo-log-likelihood of `ids` (n_tokens,), the tokens scored (all) and the blocks read.

    specials: the ids of [CLS], [SEP] and [MASK]. Each row of a forward is one block, [CLS] block [SEP], with one
    token masked; the masked-LM head reads only the masked positions."""
    cls, sep, mask = specials
    block = max_length - 2
    device = next(model.parameters()).device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    rows = ((start, min(start + block, len(ids)), pos) for start in range(0, len(ids), block)
            for pos in range(start, min(start + block, len(ids))))
    assert model.mlm_head is not None
    with _bar(len(ids), progress) as bar:
        for batch in _same_shape_batches(rows, batch_size, lambda r: r[1] - r[0]):
            blocks = torch.stack([ids[start:end] for start, end, _ in batch])
            ends = torch.tensor([[cls, sep]], dtype=blocks.dtype).expand(len(batch), 2)
            x = torch.cat([ends[:, :1], blocks, ends[:, 1:]], dim=1).to(device)
            rows_at = torch.arange(len(batch), device=device)
            masked_at = torch.tensor([pos - start + 1 for start, _, pos in batch], device=device)  # after [CLS]
            targets = x[rows_at, masked_at].clone()
            x[rows_at, masked_at] = mask
            hidden = model.encoder(x).last_hidden_state[rows_at, masked_at]
            nll += F.cross_entropy(model.mlm_head(hidden).float(), targets, reduction="sum")
            bar.update(len(batch))
    return float(nll), len(ids), math.ceil(len(ids) / block)


def _same_shape_batches(items: Any, batch_size: int, shape: Any) -> Iterator[list[Any]]:
    """Consecutive `items` in lists of at most `batch_size` whose `shape(item)` is the same."""
    batch: list[Any] = []
    for item in items:
        if batch and (len(batch) == batch_size or shape(item) != shape(batch[0])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------- inputs


def _check_options(stride: int | None, max_length: int | None, batch_size: int, threads: int | None,
                   val_fraction: float | None, mlm: bool) -> None:
    """The settings that are wrong whatever the model, refused before any file or model is read."""
    if mlm and stride is not None:
        raise ValueError(f"--stride={stride} applies to a causal LM; --mlm scores blocks of --max-length tokens, "
                         "each token once: leave out --stride")
    if stride is not None and stride < 1:
        raise ValueError(f"--stride={stride} must be at least 1: the windows move on by stride tokens")
    if stride is not None and max_length is not None and stride > max_length:
        raise ValueError(f"--stride={stride} is more than --max-length={max_length}: the tokens between two windows "
                         f"would never be scored; use a stride of at most {max_length}")
    if max_length is not None and max_length < (3 if mlm else 2):
        raise ValueError(f"--max-length={max_length} is too short: a window needs " +
                         ("[CLS], a token and [SEP] (at least 3)" if mlm else "a token and the next (at least 2)"))
    for flag, value in (("--batch-size", batch_size), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag}={value} must be at least 1")
    if val_fraction is not None and not 0 < val_fraction <= 1:
        raise ValueError(f"--val-fraction={val_fraction} must be above 0 and at most 1 (the last part of the text "
                         "scored, e.g. 0.1 as `tformer prepare` holds out)")


def _read_inputs(inputs: str | PathLike[str] | Sequence[str | PathLike[str]] | None, text: str | None,
                 data: str | PathLike[str] | None, strip_gutenberg: bool, val_fraction: float | None) -> str:
    """The text to score: the files read and joined, or `text`; the last val_fraction of it when given."""
    if (inputs is None) == (text is None):
        raise ValueError("give the text files to score (inputs) or the text itself (text=...), one of the two")
    if text is None:
        names = [inputs] if isinstance(inputs, (str, PathLike)) else list(inputs or [])
        if not names:
            raise ValueError("no text files given; name .txt or .txt.gz files, or shared data such as "
                             "wikitext-2/test.txt.gz")
        shared = data_root(None if data is None else os.fspath(data))
        roots = [Path()] + ([shared] if shared.resolve() != Path.cwd().resolve() else [])  # here, then the data
        files = find_data_files([os.fspath(name) for name in names], roots, "check the path, or point --data DIR "
                                "(or TFORMER_DATA) at the folder that holds it")
        text = join_texts([_read_one(path, strip_gutenberg) for path in files])
    if val_fraction is not None:
        text = split_train_val(text, val_fraction)[1]
    if not text.strip():
        raise ValueError("the text is empty: there is nothing to score" + (
            f" in the last --val-fraction={val_fraction} of it" if val_fraction is not None else ""))
    return text


def _read_one(path: Path, strip_gutenberg: bool) -> str:
    text = read_text(path, strip_gutenberg)
    if not text.strip():
        outside = strip_gutenberg and read_text(path, False).strip()  # blame the markers only when text is outside
        raise ValueError(f"{path} holds no text between its Gutenberg START/END lines; pass --no-strip-gutenberg"
                         if outside else f"{path} is empty: there is no text in it to score; remove it from the inputs")
    return text


def _window(model: TransformerModel, max_length: int | None, stride: int | None,
            mlm: bool) -> tuple[int, int | None]:
    """max_length (default: the model's position table) and stride (default: half of it; None for mlm)."""
    limit = model.config.max_positions
    if max_length is None:
        max_length = limit
    if max_length > limit:
        raise ValueError(f"--max-length={max_length} is longer than the model's position table "
                         f"(max_positions={limit}); use at most {limit}")
    if mlm:
        return max_length, None
    stride = max(1, max_length // 2) if stride is None else stride
    if stride > max_length:
        raise ValueError(f"--stride={stride} is more than --max-length={max_length} (the model's max_positions): "
                         f"the tokens between two windows would never be scored; use a stride of at most {max_length}")
    return max_length, stride


def _token_ids(tokenizer: Tokenizer, text: str, model: TransformerModel,
               mlm: bool) -> tuple[Tensor, list[tuple[int, int]]]:
    """The ids of the whole text (no special tokens) and each token's character span in it."""
    try:
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)  # `encode` gives no offsets
    except Exception:  # the Rust side raises a bare Exception; `encode` says which character is unknown
        tokenizer.encode(text, add_special_tokens=False)
        raise
    ids = encoding.ids
    if len(ids) < (1 if mlm else 2):
        raise ValueError(f"the text is {len(ids)} token{'s' * (len(ids) != 1)} long; a causal LM scores each token "
                         "after the first, so give a text of at least 2 tokens")
    top = max(ids)
    if top >= model.config.vocab_size:
        raise ValueError(f"the tokenizer gives id {top} but the model has only {model.config.vocab_size} token ids: "
                         "the tokenizer.json does not belong to this model")
    return torch.tensor(ids, dtype=torch.long), encoding.offsets


def _text_less(text: str, offsets: list[tuple[int, int]], tokens: list[int]) -> tuple[int, int]:
    """Characters and UTF-8 bytes of `text` without the character spans of `tokens` (in order; a character that
    two tokens share, in byte-level BPE, is taken out once)."""
    chars, size, taken_to = len(text), len(text.encode("utf-8")), 0
    for token in tokens:
        start, end = offsets[token]
        piece = text[max(start, taken_to):end]
        chars, size, taken_to = chars - len(piece), size - len(piece.encode("utf-8")), max(end, taken_to)
    return chars, size


def _mask_specials(tokenizer: Tokenizer, name: str) -> tuple[int, int, int]:
    specials = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id)
    if None in specials:
        missing = [token for token, i in zip(("[CLS]", "[SEP]", "[MASK]"), specials, strict=True) if i is None]
        raise ValueError(f"the tokenizer of {name} has no {' or '.join(missing)} token; --mlm reads [CLS] block "
                         "[SEP] with one token as [MASK]: use the tokenizer the bert model was trained with")
    return specials  # type: ignore[return-value]


def _device(name: str | torch.device | None) -> torch.device:
    if isinstance(name, torch.device):
        return name
    return pick_device("auto" if name is None else name, option="--device")


def _show(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _bar(total: int, show: bool) -> tqdm:
    return tqdm(total=total, unit="tok", unit_scale=True, desc="evaluate-lm", disable=not show, file=sys.stderr,
                leave=False)
