"""Input layouts for fine-tuning: how each family reads one text, a pair, or a question with its choices.

BERT (Devlin et al. 2019, figure 4): `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, token types 0 for A's part
and 1 for B's; its heads read [CLS] (or every token).

GPT-1 (Radford et al. 2018, section 3.3, figure 1) keeps the model and changes the input, with three tokens
added to the vocabulary: classification `<start> text <extract>`; entailment `<start> premise <delim>
hypothesis <extract>`; similarity both `<start> A <delim> B <extract>` and `<start> B <delim> A <extract>`
(the model adds their two states); multiple choice `<start> context <delim> answer_k <extract>` for each k.

`BertInputs` and `GPTInputs` have the same methods (classification, entailment, similarity, multiple_choice),
so fine-tuning code picks one with `input_layout(model, tokenizer)` and never branches on the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.models import GPT, TaskModel, TransformerModel
from tformer.tokenization import Tokenizer

GPT_SPECIAL_TOKENS = ("<start>", "<delim>", "<extract>")


@dataclass(frozen=True)
class GPTSpecialTokens:
    """Ids of GPT-1's three added tokens: start, delimiter (between the texts) and extract (read by the head)."""

    start: int
    delimiter: int
    extract: int


def add_gpt_special_tokens(tokenizer: Tokenizer, model: TransformerModel | None = None,
                           tokens: Sequence[str] = GPT_SPECIAL_TOKENS) -> GPTSpecialTokens:
    """Add GPT-1's start, delimiter and extract tokens to `tokenizer` (kept if already there) and, given a
    model, grow its token embedding (and tied output projection) to the tokenizer's size, the new rows drawn
    like the rest, and set `extract_token_id` so its task head reads the extract token. Call it before building
    the optimizer: the embedding is a new parameter."""
    if len(tokens) != 3 or len(set(tokens)) != 3:
        raise ValueError(f"tokens={tuple(tokens)} must be three different strings: start, delimiter, extract")
    tokenizer.backend.add_special_tokens(list(tokens))
    ids = GPTSpecialTokens(*(_token_id(tokenizer, token) for token in tokens))
    if model is not None:
        if tokenizer.vocab_size > model.config.vocab_size:
            resize_token_embeddings(model, tokenizer.vocab_size)
        _set_config(model, model.config.replace(extract_token_id=ids.extract))
    return ids


def resize_token_embeddings(model: TransformerModel, vocab_size: int) -> None:
    """Give `model` a token embedding of `vocab_size` rows: the first rows kept, new ones Normal(0, init_std)
    as at initialisation. A tied output projection follows; an untied one (and BERT's MLM bias) grows too."""
    core = model.backbone if isinstance(model, TaskModel) else model
    if core.config.family not in ("gpt", "bert"):
        raise ValueError(f"resize_token_embeddings works on GPT and BERT models, not family={core.config.family!r}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size={vocab_size!r} must be a positive integer")
    token: nn.Embedding = (core.decoder if isinstance(core, GPT) else core.encoder).embeddings.token
    std = core.config.init_std
    token.weight = nn.Parameter(_resized(token.weight.data, vocab_size, std))
    token.num_embeddings = vocab_size
    mlm_head = getattr(core, "mlm_head", None)  # BERT's, when it has its pre-training heads
    output = core.lm_head if isinstance(core, GPT) else mlm_head.decoder if mlm_head is not None else None
    if output is not None:
        output.weight = token.weight if core.config.tie_word_embeddings else nn.Parameter(
            _resized(output.weight.data, vocab_size, std))
        output.out_features = vocab_size
    if mlm_head is not None:
        mlm_head.bias = nn.Parameter(_resized(mlm_head.bias.data, vocab_size, 0.0))
    _set_config(model, model.config.replace(vocab_size=vocab_size))


def _resized(old: Tensor, rows: int, std: float) -> Tensor:
    new = torch.empty((rows, *old.shape[1:]), dtype=old.dtype, device=old.device)
    nn.init.normal_(new, std=std) if std > 0 else nn.init.zeros_(new)
    keep = min(rows, old.size(0))
    new[:keep] = old[:keep]
    return new


def _set_config(model: TransformerModel, config: ModelConfig) -> None:
    for module in model.modules():  # a task model and its backbone share one config
        if isinstance(module, TransformerModel):
            module.config = config


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"{token!r} is not in the tokenizer; call tformer.tasks.add_gpt_special_tokens(tokenizer, "
                         "model) first")
    return token_id


def _fit(parts: list[list[int]], budget: int | None) -> list[list[int]]:
    """Cut the longest part (the later one on a tie) by one token from its end until all fit in `budget` tokens."""
    if budget is None:
        return parts
    parts = [list(p) for p in parts]
    while sum(map(len, parts)) > budget:
        longest = max(reversed(range(len(parts))), key=lambda i: len(parts[i]))
        parts[longest].pop()
    return parts


def _pad(rows: list[list[int]], pad_id: int, types: list[list[int]] | None = None) -> dict[str, Tensor]:
    length = max(map(len, rows))
    out = {"input_ids": torch.tensor([r + [pad_id] * (length - len(r)) for r in rows], dtype=torch.long),
           "attention_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=torch.long)}
    if types is not None:
        out["token_type_ids"] = torch.tensor([t + [0] * (length - len(t)) for t in types], dtype=torch.long)
    return out


def _check_pairs(first: Sequence[str], second: Sequence[str] | None, names: str) -> None:
    if isinstance(first, str) or isinstance(second, str):
        raise ValueError(f"{names} take lists of texts, got a single string; wrap it in a list")
    if second is not None and len(first) != len(second):
        raise ValueError(f"{len(first)} vs {len(second)} texts for {names}; give one of each per example")
    if not len(first):
        raise ValueError(f"no texts given for {names}")


def _choice_count(contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> int:
    _check_pairs(contexts, choices, "contexts and choices")
    counts = [len(c) if not isinstance(c, str) else -1 for c in choices]
    if counts[0] < 1 or any(c != counts[0] for c in counts):
        bad = next(i for i, c in enumerate(counts) if c != counts[0] or c < 1)
        raise ValueError(f"example {bad} has {counts[bad]} choices but example 0 has {counts[0]}; give every "
                         "example the same number (>= 1) of answer strings, as a list")
    return counts[0]


def _stack_choices(batch: dict[str, Tensor], examples: int, choices: int) -> dict[str, Tensor]:
    return {key: value.view(examples, choices, -1) for key, value in batch.items()}


class BertInputs:
    """BERT's input layout: `[CLS] A [SEP] (B [SEP])`, token types 0 then 1, padded on the right.

    Each method returns input_ids, attention_mask and token_type_ids, (batch, length) tensors, or
    (batch, choices, length) for multiple choice. Pairs go through the tokenizer's post-processor when it
    has one (real BERT tokenizer.json files do), else the [CLS]/[SEP] tokens are placed here.
    max_length cuts the longest text first, the special tokens kept.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._templated = (tokenizer.backend.post_processor is not None
                           and tokenizer.backend.num_special_tokens_to_add(True) == 3)
        if not self._templated and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
            raise ValueError(f"BERT's layout needs [CLS] and [SEP] tokens; {tokenizer!r} lacks them: train the "
                             "tokenizer with kind='wordpiece' (or special_tokens that include them)")
        if max_length is not None and max_length < 4:
            raise ValueError(f"max_length={max_length} leaves no room for text next to [CLS] A [SEP] B [SEP]")

    def classification(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, Tensor]:
        """`[CLS] text [SEP]`, or `[CLS] text [SEP] pair [SEP]` with pairs."""
        _check_pairs(texts, pairs, "texts and pairs")
        if self._templated:
            tok = self.tokenizer
            batch = tok.encode_batch(list(texts), None if pairs is None else list(pairs), padding=True,
                                     truncation=self.max_length is not None, max_length=self.max_length)
            batch.setdefault("token_type_ids", torch.zeros_like(batch["input_ids"]))
            return batch
        return self._by_hand(texts, pairs)

    def entailment(self, premises: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Tensor]:
        """`[CLS] premise [SEP] hypothesis [SEP]`."""
        return self.classification(premises, hypotheses)

    def similarity(self, first: Sequence[str], second: Sequence[str]) -> dict[str, Tensor]:
        """`[CLS] A [SEP] B [SEP]`: BERT reads the pair once, in the given order, (batch, length)."""
        return self.classification(first, second)

    def multiple_choice(self, contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> dict[str, Tensor]:
        """`[CLS] context [SEP] answer_k [SEP]` for every choice k: (batch, choices, length)."""
        count = _choice_count(contexts, choices)
        flat = [answer for answers in choices for answer in answers]
        batch = self.classification([c for c in contexts for _ in range(count)], flat)
        return _stack_choices(batch, len(contexts), count)

    def _by_hand(self, texts: Sequence[str], pairs: Sequence[str] | None) -> dict[str, Tensor]:
        tok = self.tokenizer
        cls, sep = tok.cls_token_id, tok.sep_token_id
        first = tok.encode_batch(list(texts), padding=False, add_special_tokens=False, return_tensors=None)
        second = (tok.encode_batch(list(pairs), padding=False, add_special_tokens=False, return_tensors=None)
                  if pairs is not None else None)
        rows, types = [], []
        for i, a in enumerate(first["input_ids"]):
            parts = [a] if second is None else [a, second["input_ids"][i]]
            budget = None if self.max_length is None else self.max_length - len(parts) - 1
            parts = _fit(parts, budget)
            row = [cls, *parts[0], sep]
            kinds = [0] * len(row)
            if len(parts) == 2:
                row += [*parts[1], sep]
                kinds += [1] * (len(parts[1]) + 1)
            rows.append(row)
            types.append(kinds)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        return _pad(rows, pad, types)


class GPTInputs:
    """GPT-1's input transformations: `<start> ... <extract>` with `<delim>` between texts, padded on the right.

    Each method returns input_ids and attention_mask, (batch, length) tensors; similarity gives
    (batch, 2, length) (both orders) and multiple choice (batch, choices, length). The special tokens are the
    ones `add_gpt_special_tokens` added (looked up by name when not given). max_length cuts the longest text
    first, the special tokens kept.
    """

    def __init__(self, tokenizer: Tokenizer, special: GPTSpecialTokens | None = None,
                 max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.special = special or GPTSpecialTokens(*(_token_id(tokenizer, t) for t in GPT_SPECIAL_TOKENS))
        self.max_length = max_length
        if max_length is not None and max_length < 5:
            raise ValueError(f"max_length={max_length} leaves no room for text next to <start> A <delim> B <extract>")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def layout(self, *parts: Sequence[int]) -> list[int]:
        """One sequence: `<start> part_1 <delim> part_2 ... <extract>` from token ids, cut to max_length."""
        budget = None if self.max_length is None else self.max_length - len(parts) - 1
        fitted = _fit([list(p) for p in parts], budget)
        row = [self.special.start]
        for i, part in enumerate(fitted):
            row += ([self.special.delimiter] if i else []) + part
        return row + [self.special.extract]

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(list(texts), padding=False, add_special_tokens=False,
                                           return_tensors=None)["input_ids"]

    def classification(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, Tensor]:
        """`<start> text <extract>`, or the entailment layout with pairs."""
        _check_pairs(texts, pairs, "texts and pairs")
        if pairs is not None:
            return self.entailment(texts, pairs)
        return _pad([self.layout(a) for a in self._ids(texts)], self.pad_id)

    def entailment(self, premises: Sequence[str], hypotheses: Sequence[str]) -> dict[str, Tensor]:
        """`<start> premise <delim> hypothesis <extract>`."""
        _check_pairs(premises, hypotheses, "premises and hypotheses")
        rows = [self.layout(a, b) for a, b in zip(self._ids(premises), self._ids(hypotheses), strict=True)]
        return _pad(rows, self.pad_id)

    def similarity(self, first: Sequence[str], second: Sequence[str]) -> dict[str, Tensor]:
        """Both orders, `<start> A <delim> B <extract>` and `<start> B <delim> A <extract>`: (batch, 2, length)."""
        _check_pairs(first, second, "first and second texts")
        rows = []
        for a, b in zip(self._ids(first), self._ids(second), strict=True):
            rows += [self.layout(a, b), self.layout(b, a)]
        return _stack_choices(_pad(rows, self.pad_id), len(first), 2)

    def multiple_choice(self, contexts: Sequence[str], choices: Sequence[Sequence[str]]) -> dict[str, Tensor]:
        """`<start> context <delim> answer_k <extract>` for every choice k: (batch, choices, length)."""
        count = _choice_count(contexts, choices)
        answers = self._ids([answer for options in choices for answer in options])
        rows = [self.layout(context, answers[i * count + k])
                for i, context in enumerate(self._ids(contexts)) for k in range(count)]
        return _stack_choices(_pad(rows, self.pad_id), len(contexts), count)


def input_layout(model: TransformerModel, tokenizer: Tokenizer, max_length: int | None = None
                 ) -> BertInputs | GPTInputs:
    """The layout `model` reads: BertInputs for BERT, GPTInputs for GPT (max_length defaults to max_positions)."""
    max_length = model.config.max_positions if max_length is None else max_length
    if model.config.family == "bert":
        return BertInputs(tokenizer, max_length)
    if model.config.family == "gpt":
        return GPTInputs(tokenizer, max_length=max_length)
    raise ValueError(f"fine-tuning layouts exist for gpt and bert models, not family={model.config.family!r}")
