"""Tokenizers: text to token ids and back, as a thin layer over the Hugging Face `tokenizers` library.

The four kinds of the lecture notes, each trained on your text in seconds by `Tokenizer.train`:

* ``char``: every character is a token (the vocabulary is the characters seen, in code-point order, after any
  special tokens, so tinyshakespeare gives nanoGPT's 65 ids). An unseen character is an error unless "[UNK]" is
  among the special tokens.
* ``word``: words and runs of punctuation split at whitespace (`tokenizers` `Whitespace`), unseen ones become [UNK].
* ``bpe``: GPT-2's byte-level BPE: the 256 bytes are the base alphabet, so there is no unknown token and
  `decode(encode(x)) == x` for any text.
* ``wordpiece``: BERT's WordPiece: words split at whitespace and punctuation, pieces after the first marked `##`,
  [UNK] only for words with a character never seen in training; `encode` adds [CLS] A [SEP] (B [SEP]).

Any `tokenizer.json` loads with `Tokenizer.from_file`, including the ones real checkpoints ship; ids then match
`transformers.AutoTokenizer` on the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tokenizers
import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers.decoders import DecodeStream

from tformer.hub import resolve_model_path
from tformer.tokenizer_inputs import NO_TEXT, TextCheck, as_files, file_has_text, read_batches

KINDS = ("char", "word", "bpe", "wordpiece")
DEFAULT_SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {
    "char": (),
    "word": ("[PAD]", "[UNK]", "[BOS]", "[EOS]"),
    "bpe": ("<|endoftext|>",),
    "wordpiece": ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
}
DEFAULT_VOCAB_SIZE = {"char": None, "word": 30_000, "bpe": 8_192, "wordpiece": 8_192}
# Which token plays which role, by the names the common checkpoints use; the first one in the vocabulary wins.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "cls": ("[CLS]", "<cls>", "<s>"),
    "sep": ("[SEP]", "<sep>", "</s>"),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("[BOS]", "<bos>", "<s>", "<|startoftext|>", "<|endoftext|>"),
    "eos": ("[EOS]", "<eos>", "</s>", "<|endoftext|>"),
}
Ids = Sequence[int] | torch.Tensor


def _role_property(role: str) -> property:
    return property(lambda self: self._role_id(role), doc=f"Id of the {role} token, or None if there is none.")


class Tokenizer:
    """Tokenization (seed: word with UNK, char, sub-word BPE / WordPiece `##`, byte-level BPE with no UNK): str <-> ids.

    `encode(text) -> list[int]`, `encode_batch(texts) -> {"input_ids": (batch, length), "attention_mask": ...}`,
    `decode(ids) -> str`. The wrapped `tokenizers.Tokenizer` is `.backend`.
    """

    def __init__(self, backend: tokenizers.Tokenizer, kind: str | None = None) -> None:
        self.backend = backend
        padding = backend.padding  # a tokenizer.json may pad and truncate every call; here each call says so
        self._pad_token: str | None = padding["pad_token"] if padding else None
        backend.no_padding()
        backend.no_truncation()
        self.kind = kind or _detect_kind(backend)

    # ---- building: train, load, save -------------------------------------------------------------------------

    @classmethod
    def train(cls, files_or_iterator: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str],
              kind: str = "bpe", vocab_size: int | None = None, special_tokens: Sequence[str] | None = None,
              min_frequency: int = 0, show_progress: bool = False) -> Tokenizer:
        """Train a tokenizer of `kind` on text files (plain or .gz, given as paths) or an iterator of texts."""
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
        specials = list(DEFAULT_SPECIAL_TOKENS[kind] if special_tokens is None else special_tokens)
        vocab_size = DEFAULT_VOCAB_SIZE[kind] if vocab_size is None else vocab_size
        if vocab_size is not None and vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size} must be positive (or None for the {kind} default)")
        if kind in ("word", "wordpiece") and "[UNK]" not in specials:
            raise ValueError(f"a {kind} tokenizer needs '[UNK]' among special_tokens (got {specials})")
        if kind == "bpe" and vocab_size is not None and vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size={vocab_size} is too small for byte-level BPE: it needs at least 256 bytes "
                             f"+ {len(specials)} special tokens")
        backend, trainer = _untrained(kind, vocab_size, specials, min_frequency, show_progress)
        files = as_files(files_or_iterator)
        if files is not None and not any(f.suffix == ".gz" for f in files):
            if not any(map(file_has_text, files)):
                raise ValueError(NO_TEXT.format(what=f"{len(files)} file(s) with no text in them" if files else
                                                 "an empty list of files"))
            backend.train([str(f) for f in files], trainer)
        else:
            texts = TextCheck(read_batches(files) if files is not None else iter(files_or_iterator))
            backend.train_from_iterator(texts, trainer)
            if not texts.seen_text:
                raise ValueError(NO_TEXT.format(what=f"{texts.items} text(s), all empty or blank" if texts.items
                                                 else "an empty iterator of texts"))
        if kind == "char":  # order as nanoGPT does: specials first, then the characters by code point
            vocab = backend.get_vocab()
            chars = sorted(token for token in vocab if token not in specials)
            backend = _char_backend({t: i for i, t in enumerate(specials + chars)}, specials)
        if kind == "wordpiece" and "[CLS]" in specials and "[SEP]" in specials:
            backend.post_processor = processors.TemplateProcessing(
                single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                special_tokens=[(t, backend.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
        return cls(backend, kind)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer.json, or the tokenizer.json inside a folder (a Hugging Face checkpoint folder, or a Hub
        name such as "bert-base-cased", found in the Hugging Face cache as from_pretrained finds it)."""
        path = resolve_model_path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file {path}: pass a tokenizer.json or a folder holding one")
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception
            raise ValueError(f"{path} is not a tokenizer.json that `tokenizers` can read: {error}") from None
        return cls(backend)

    def save(self, path: str | os.PathLike) -> Path:
        """Write one tokenizer.json (model, special tokens, pre-tokenizer, decoder); a folder gets tokenizer.json."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # written whole, then renamed over the old one
        try:
            self.backend.save(str(tmp))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    # ---- what is in the vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: the size of a model's embedding table."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens (kept whole in text, skipped by `decode(skip_special_tokens=True)`), by id."""
        added = self.backend.get_added_tokens_decoder()
        return [added[i].content for i in sorted(added) if added[i].special]

    pad_token_id = _role_property("pad")
    unk_token_id = _role_property("unk")
    cls_token_id = _role_property("cls")
    sep_token_id = _role_property("sep")
    mask_token_id = _role_property("mask")
    bos_token_id = _role_property("bos")
    eos_token_id = _role_property("eos")

    @property
    def pad_token(self) -> str | None:
        """The token `encode_batch` pads with; settable, e.g. `tok.pad_token = "<|endoftext|>"` for a causal LM."""
        if self._pad_token is not None:
            return self._pad_token
        pad_id = self._role_id("pad")
        return None if pad_id is None else self.id_to_token(pad_id)

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        if token is not None and self.token_to_id(token) is None:
            raise ValueError(f"pad token {token!r} is not in the vocabulary; pick one of {self.special_tokens}")
        self._pad_token = token

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def _role_id(self, role: str) -> int | None:
        if role == "pad" and self._pad_token is not None:
            return self.token_to_id(self._pad_token)
        names = ROLE_NAMES[role]
        if role == "unk":
            names = (getattr(self.backend.model, "unk_token", None) or names[0], *names)
        return next((i for i in map(self.backend.token_to_id, names) if i is not None), None)

    # ---- text to ids -----------------------------------------------------------------------------------------

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[str]:
        """The tokens as strings, e.g. ['[CLS]', 'un', '##believ', '##able', '[SEP]']: to look at, not to train on."""
        return self._encode(text, pair, add_special_tokens).tokens

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one text (or a pair, for BERT: [CLS] A [SEP] B [SEP]), no padding, no truncation."""
        return self._encode(text, pair, add_special_tokens).ids

    def _encode(self, text: str, pair: str | None, add_special_tokens: bool) -> tokenizers.Encoding:
        try:
            return self.backend.encode(text, pair, add_special_tokens=add_special_tokens)
        except Exception as error:  # the Rust side raises a bare Exception, e.g. for a character not in a char vocab
            unseen = [c for c in (text + (pair or "")) if self.kind == "char" and self.token_to_id(c) is None]
            reason = f"the character {unseen[0]!r} is not in the vocabulary" if unseen else str(error)
            raise ValueError(f"cannot encode {text[:40]!r}: {reason}; retrain with '[UNK]' among special_tokens, "
                             "or on text that has these characters") from None

    def encode_batch(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                     padding: bool | str = True, max_length: int | None = None, truncation: bool = False,
                     add_special_tokens: bool = True, return_tensors: str | None = "pt") -> dict[str, Any]:
        """Encode several texts (or text pairs) into `input_ids`, `attention_mask` (1 = token, 0 = padding) and,
        for pairs or a BERT-style tokenizer, `token_type_ids`: (batch, length) int64 tensors, or lists of lists
        with return_tensors=None. padding: True (or "longest") = to the longest, "max_length" = to max_length,
        False = none; truncation=True cuts to max_length tokens, special tokens included, longest text first."""
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(f"padding={padding!r} is not one of True, False, 'longest', 'max_length'")
        if (truncation or padding == "max_length") and max_length is None:
            raise ValueError(f"{'truncation=True' if truncation else 'padding=max_length'} needs max_length=N")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt' or None")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs; give one pair per text")
        if padding and self.pad_token is None:
            raise ValueError(f"this {self.kind} tokenizer has no pad token: set one (tok.pad_token = "
                             f"{self.special_tokens[0] if self.special_tokens else '...'!r}), train it with a "
                             "'[PAD]' special token, or call encode_batch(..., padding=False)")
        inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        try:
            if truncation:
                self.backend.enable_truncation(max_length, strategy="longest_first")
            if padding:
                pad = self.pad_token
                self.backend.enable_padding(pad_id=self.token_to_id(pad), pad_token=pad,
                                            length=max_length if padding == "max_length" else None)
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as error:
            raise ValueError(f"cannot encode the batch: {error}") from None
        finally:
            self.backend.no_padding()
            self.backend.no_truncation()
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings],
                               "attention_mask": [e.attention_mask for e in encodings]}
        if pairs is not None or self.kind == "wordpiece":
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if return_tensors == "pt":
            lengths = sorted({len(ids) for ids in out["input_ids"]})
            if len(lengths) > 1:
                raise ValueError(f"the sequences have {lengths[0]} to {lengths[-1]} tokens, too ragged for a tensor: "
                                 "pass padding=True, truncation=True, or return_tensors=None")
            out = {key: torch.tensor(value, dtype=torch.long) for key, value in out.items()}
        return out

    # ---- ids to text -----------------------------------------------------------------------------------------

    def decode(self, ids: Ids, skip_special_tokens: bool = True) -> str:
        """The text of a sequence of ids; special tokens (padding included) are left out unless asked for, except
        the unknown token: "[UNK]" stands for a word of the text, so "the [UNK] danced" keeps it where it was, as
        transformers' decode shows it (its skip_special_tokens=True would drop it with the layout tokens)."""
        ids = self._check_ids(ids)
        if skip_special_tokens:
            skipped = self.skipped_ids
            ids = [i for i in ids if i not in skipped]
        return self.backend.decode(ids, skip_special_tokens=False)

    @property
    def skipped_ids(self) -> frozenset[int]:
        """The ids `decode(skip_special_tokens=True)` leaves out: the special tokens but the unknown one."""
        size = self.vocab_size  # adding a token grows it: then the set is computed again
        if getattr(self, "_skipped", (None,))[0] != size:
            added, unk = self.backend.get_added_tokens_decoder(), self.unk_token_id
            self._skipped = (size, frozenset(i for i, token in added.items() if token.special and i != unk))
        return self._skipped[1]

    def decode_batch(self, batch: Sequence[Ids] | torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def stream(self, skip_special_tokens: bool = True) -> TokenStream:
        """An incremental decoder for generation: `put(id)` returns the newly completed text, `flush()` the rest."""
        return TokenStream(self, skip_special_tokens)

    def _check_ids(self, ids: Ids) -> list[int]:
        if isinstance(ids, torch.Tensor) and ids.dim() != 1:
            raise ValueError(f"decode takes one sequence of ids, got a tensor of shape {tuple(ids.shape)}; "
                             "use decode_batch for a batch")
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(f"token id {bad} is out of range: this tokenizer has ids 0..{self.vocab_size - 1}")
        return ids

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


class TokenStream:
    """Streaming detokenization: ids in one at a time; text out only once whole characters are known.

    `put(id) -> str` (possibly ""), `flush() -> str` at the end. The pieces joined equal `decode(all ids)`; a
    character split across byte-level tokens is held back until complete, so U+FFFD never appears mid-stream
    for valid text. The work per token is bounded: `tokenizers.decoders.DecodeStream` keeps a small window.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._reset()

    def _reset(self, context: list[int] | None = None) -> None:
        # the skipped ids never reach the library's stream, so [UNK] shows as in `decode`
        self._stream = DecodeStream(context or None, skip_special_tokens=False)
        self._pending: list[int] = []  # ids since the last piece of text, still held back
        self._context: list[int] = context or []  # the last few ids before them, to join words as decode does

    def put(self, token_id: int) -> str:
        (token_id,) = self.tokenizer._check_ids([token_id])
        if self.skip_special_tokens and token_id in self.tokenizer.skipped_ids:
            return ""
        self._pending.append(token_id)
        try:
            piece = self._stream.step(self.tokenizer.backend, token_id)
        except Exception:  # "Invalid prefix": bytes that are not UTF-8 (a sampled model can make them) changed
            piece = self._held_text()  # the text already shown; show the replacement characters, as decode does
            self._reset(self._context + self._pending)
        if piece is None:
            return ""
        self._context, self._pending = (self._context + self._pending)[-4:], []
        return piece

    def flush(self) -> str:
        """The text still held back (an unfinished character decodes to U+FFFD, as in `decode`); resets the stream."""
        text = self._held_text()
        self._reset()
        return text

    def _held_text(self) -> str:
        if not self._pending:
            return ""
        decode = self.tokenizer.backend.decode  # the ids here are never skipped ones
        before, after = decode(self._context, skip_special_tokens=False), decode(self._context + self._pending, False)
        return after[len(before):] if after.startswith(before) else after


def _untrained(kind: str, vocab_size: int | None, specials: list[str], min_frequency: int,
               show_progress: bool) -> tuple[tokenizers.Tokenizer, trainers.Trainer]:
    common = {"special_tokens": specials, "min_frequency": min_frequency, "show_progress": show_progress}
    if kind == "char":
        return _char_backend({}, specials), trainers.WordLevelTrainer(vocab_size=vocab_size or 2**31 - 1, **common)
    if kind == "word":
        backend = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        return backend, trainers.WordLevelTrainer(vocab_size=vocab_size, **common)
    if kind == "bpe":
        backend = tokenizers.Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        return backend, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                            **common)
    backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return backend, trainers.WordPieceTrainer(vocab_size=vocab_size, continuing_subword_prefix="##", **common)


def _char_backend(vocab: dict[str, int], specials: list[str]) -> tokenizers.Tokenizer:
    unk = "[UNK]" if "[UNK]" in specials else None
    backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token=unk) if vocab else models.WordLevel())
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join the characters as they are (no decoder would put spaces between)
    if vocab:
        backend.add_special_tokens(specials)
    return backend


def _detect_kind(backend: tokenizers.Tokenizer) -> str:
    model = type(backend.model).__name__
    if model == "WordLevel":
        pieces = backend.pre_tokenizer.pre_tokenize_str("ab c") if backend.pre_tokenizer else []
        return "char" if [p for p, _ in pieces] == ["a", "b", " ", "c"] else "word"
    return {"BPE": "bpe", "WordPiece": "wordpiece"}.get(model, model.lower())
