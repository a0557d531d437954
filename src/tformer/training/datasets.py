"""From a recipe's `data` section to a tokenizer, a training stream and fixed evaluation batches.

* causal_lm: the text files are prepared once (`tformer prepare`: tokenizer, train.bin, val.bin) into
  RUN/data, or data.prepared names such a folder prepared before; either is read as random windows.
* mlm / mlm_nsp: each file is one document, cut into segments of whole lines up to half the example length;
  NSP pairs are (segment i, segment i+1) or (segment i, a random segment of another document); MLM masks 15 %
  with 80/10/10 at batch time from a generator saved in checkpoints.
* seq2seq / decoder_seq2seq: parallel files (or the synthetic number corpus) with one shared tokenizer trained
  on both sides of the training pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import processors
from torch import Tensor

from tformer.data.mlm import MLMCollator, pad_ids
from tformer.data.nsp import PretrainingCollator, make_nsp_examples
from tformer.data.prepare import prepare, read_text
from tformer.data.seq2seq import ParallelCorpus, read_lines
from tformer.data.synthetic import english_number, german_number, number_pairs, split_numbers
from tformer.tokenization import Tokenizer
from tformer.training.options import OptionError
from tformer.training.recipe import Recipe, data_root, find_data_files
from tformer.training.streams import (
    EpochStream,
    WindowStream,
    decoder_pairs_stream,
    fixed_batches,
    joined_pairs,
    seq2seq_stream,
)

TRANSLATION_SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]")


@dataclass
class TrainingData:
    """What the Trainer needs from the data: tokenizer, training stream, evaluation batches, model fields."""

    tokenizer: Tokenizer
    train: Any  # WindowStream | EpochStream
    eval_batches: list[dict[str, Tensor]]
    model_fields: dict[str, Any]
    valid_pairs: list[tuple[str, str]] = field(default_factory=list)
    test_pairs: list[tuple[str, str]] = field(default_factory=list)
    encode_source: Callable[[str], list[int]] | None = None


def check_text_files(recipe: Recipe, objective: str, smallest: int) -> None:
    """A text objective needs data.text (not the numbers corpus) and rows of at least `smallest` tokens."""
    d = recipe.data
    if d.corpus == "numbers":
        raise OptionError(f"data.corpus=numbers gives translation pairs, but train.objective={objective} trains on "
                          "text; use train.objective=seq2seq or decoder_seq2seq, or data.corpus=files")
    if not d.text:
        raise OptionError(f"data.text is empty; list the text files train.objective={objective} trains on "
                          "(relative to data.root)")
    if d.max_length < smallest:
        raise OptionError(f"data.max_length={d.max_length} leaves no room for a token in [CLS] A [SEP]"
                          f"{' B [SEP]' if smallest == 5 else ''}; use at least {smallest} (BERT: 128 or 512)")


def _files(recipe: Recipe, paths: list[str], what: str) -> list[Path]:
    if not paths:
        raise ValueError(f"data.text is empty; list the {what} text files in the recipe (relative to data.root)")
    return find_data_files(paths, [data_root(recipe.data.root)],
                           "set data.root (or TFORMER_DATA) to the folder that holds it")


def _tokenizer(recipe: Recipe, run_dir: Path, texts: Callable[[], Any], specials: tuple[str, ...] | None,
               log: Callable[[str], Any]) -> Tokenizer:
    """The recipe's tokenizer: a given tokenizer.json, or one trained on the training text and kept in RUN/data.

    Training a WordPiece or BPE vocabulary is not bit-for-bit repeatable (ties fall in hash order), so a run
    trains it once and every later start of the same run (`--resume`) reads the saved one.
    """
    kind = recipe.data.tokenizer
    if kind.endswith(".json"):
        return Tokenizer.from_file(recipe.data_path(kind))
    if kind in ("word", "wordpiece") and specials is not None and "[UNK]" not in specials:
        specials = ("[UNK]", *specials)
    if kind == "char" and specials is not None:
        specials = tuple(s for s in specials if s != "[UNK]")
    d = recipe.data
    wanted = {"kind": kind, "vocab_size": d.vocab_size, "specials": list(specials or ()), "corpus": d.corpus,
              "text": d.text, "train_source": d.train_source, "train_target": d.train_target,
              "train_pairs": d.train_pairs, "tokenizer_pairs": d.tokenizer_pairs, "lowercase": d.lowercase,
              "val_fraction": d.val_fraction}
    saved, stamp = run_dir / "data" / "tokenizer.json", run_dir / "data" / "tokenizer-recipe.json"
    if saved.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log(f"tokenizer: reusing {saved} (trained earlier in this run)")
        return Tokenizer.from_file(saved)
    tokenizer = Tokenizer.train(texts(), kind=kind, vocab_size=d.vocab_size, special_tokens=specials)
    saved.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(saved)
    stamp.write_text(json.dumps(wanted))
    return tokenizer


def _eval_take(batches: list[dict[str, Tensor]], limit: int | None) -> list[dict[str, Tensor]]:
    return batches if limit is None else batches[:limit]


# ---------------------------------------------------------------------------------------------- causal LM


PREPARED_FILES = ("train.bin", "val.bin", "tokenizer.json", "meta.json")  # what data.prepared must hold


def causal_lm_data(recipe: Recipe, run_dir: Path, log: Callable[[str], Any]) -> TrainingData:
    if recipe.data.prepared is not None:
        out = recipe.data_path(recipe.data.prepared)  # its files are checked before the data (data_files)
        log(f"data: training on {out} as prepared (data.prepared)")
    else:
        out = _prepare_into_run(recipe, run_dir, log)
    return _window_data(recipe, out, log)


def _prepare_into_run(recipe: Recipe, run_dir: Path, log: Callable[[str], Any]) -> Path:
    """`tformer prepare` of data.text into RUN/data, unless it holds the same preparation already."""
    files = _files(recipe, recipe.data.text, "training")
    out = run_dir / "data"
    wanted = {"inputs": [str(f) for f in files], "tokenizer": recipe.data.tokenizer,
              "vocab_size": recipe.data.vocab_size, "val_fraction": recipe.data.val_fraction}
    stamp = out / "recipe-data.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == wanted and (out / "train.bin").is_file()):
        kind = recipe.data.tokenizer
        prepare(files, out, tokenizer="char" if kind.endswith(".json") else kind,
                tokenizer_file=recipe.data_path(kind) if kind.endswith(".json") else None,
                vocab_size=recipe.data.vocab_size, val_fraction=recipe.data.val_fraction, progress=False, log=log,
                overwrite=True)  # RUN/data belongs to this run: a new recipe there replaces its old preparation
        stamp.write_text(json.dumps(wanted))
    else:
        log(f"data: reusing {out} (prepared earlier for the same files and tokenizer)")
    return out


def _window_data(recipe: Recipe, out: Path, log: Callable[[str], Any]) -> TrainingData:
    """Random training windows of out/train.bin, fixed evaluation batches of out/val.bin."""
    tokenizer = Tokenizer.from_file(out / "tokenizer.json")
    d = recipe.data
    train = WindowStream(str(out / "train.bin"), block_size=d.block_size, batch_size=d.batch_size,
                         seed=recipe.train.seed)
    val_tokens = json.loads((out / "meta.json").read_text())["val_tokens"]
    val_path = out / "val.bin"
    if val_tokens <= d.block_size:  # e.g. val_fraction=0: say so rather than fail or hide it
        log(f"data: val.bin holds {val_tokens} tokens, not one window of {d.block_size} + 1; evaluating on "
            f"train.bin (raise data.val_fraction for a held-out loss)")
        val_path = out / "train.bin"
    val = WindowStream(str(val_path), block_size=d.block_size, batch_size=d.batch_size, seed=recipe.train.seed + 1)
    eval_batches = [val.next_batch() for _ in range(recipe.eval.batches or 20)]
    fields = {"vocab_size": tokenizer.vocab_size}
    if tokenizer.eos_token_id is not None:
        fields.update(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    return TrainingData(tokenizer, train, eval_batches, fields)


# ------------------------------------------------------------------------------------------- masked LM + NSP


def segments(lines: list[list[int]], budget: int) -> list[list[int]]:
    """Consecutive lines joined into segments of at most `budget` tokens (a longer line is cut)."""
    out, current = [], []
    for ids in lines:
        while len(ids) > budget:
            if current:
                out.append(current)
                current = []
            out.append(ids[:budget])
            ids = ids[budget:]
        if len(current) + len(ids) > budget:
            out.append(current)
            current = []
        current = current + ids
    if current:
        out.append(current)
    return out


def mlm_data(recipe: Recipe, run_dir: Path, log: Callable[[str], Any], *, next_sentence: bool) -> TrainingData:
    """Masked-LM examples of whole-line segments; with `next_sentence`, NSP pairs across documents too."""
    d, nsp = recipe.data, next_sentence
    files = _files(recipe, d.text, "pre-training")
    if nsp and len(files) < 2:
        raise ValueError(f"train.objective=mlm_nsp reads each data.text file as one document and takes its random "
                         f"next sentences from another document, so it needs 2 or more files, got {len(files)} "
                         f"({files[0]}); split the text into several files, or use train.objective=mlm")
    books = [read_text(f) for f in files]
    held = [int(len(book) * (1 - d.val_fraction)) for book in books]
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    tokenizer = _tokenizer(recipe, run_dir, lambda: iter([book[:h] for book, h in zip(books, held, strict=True)]),
                           specials, log)
    for role in ("pad", "cls", "sep", "mask"):
        if getattr(tokenizer, f"{role}_token_id") is None:
            raise ValueError(f"the tokenizer has no {role} token; masked LM needs [PAD], [CLS], [SEP] and [MASK]")
    budget = (d.max_length - 3) // 2 if nsp else d.max_length - 2

    def encode(text: str) -> list[list[int]]:
        lines = [line for line in text.split("\n") if line.strip()]
        return tokenizer.encode_batch(lines, padding=False, add_special_tokens=False, return_tensors=None)["input_ids"]

    train_docs = [segments(encode(book[:h]), budget) for book, h in zip(books, held, strict=True)]
    val_docs = [segments(encode(book[h:]), budget) for book, h in zip(books, held, strict=True)]
    val_docs = [doc for doc in val_docs if doc]
    ids = {role: getattr(tokenizer, f"{role}_token_id") for role in ("pad", "cls", "sep", "mask")}
    seed = recipe.train.seed

    def examples(docs: list[list[list[int]]], salt: int) -> list[dict[str, Any]]:
        if nsp:
            return make_nsp_examples(docs, cls_id=ids["cls"], sep_id=ids["sep"], max_length=d.max_length,
                                     seed=seed + salt, random_next_probability=d.random_next_probability)
        return [{"input_ids": [ids["cls"], *s, ids["sep"]]} for doc in docs for s in doc]

    if nsp:
        _check_nsp_documents(train_docs, val_docs, files, recipe)
    train_examples, val_examples = examples(train_docs, 0), examples(val_docs, 1)
    if not val_examples:
        raise ValueError(f"data.val_fraction={d.val_fraction} leaves no validation text; raise it")
    log(f"data: {len(files)} documents, {len(train_examples):,} training and {len(val_examples):,} validation "
        f"examples of <= {d.max_length} tokens; tokenizer {tokenizer.kind} with {tokenizer.vocab_size:,} tokens")
    common = dict(pad_token_id=ids["pad"], mask_token_id=ids["mask"], vocab_size=tokenizer.vocab_size,
                  mlm_probability=d.mlm_probability)

    def collator(collator_seed: int) -> MLMCollator:
        if nsp:
            return PretrainingCollator(cls_id=ids["cls"], sep_id=ids["sep"], seed=collator_seed, **common)
        return _PlainMLM(special_ids=(ids["cls"], ids["sep"]), seed=collator_seed, **common)

    train_collate = collator(seed)
    train = EpochStream(lambda epoch: fixed_batches(len(train_examples), d.batch_size, seed, epoch),
                        lambda idx: train_collate([train_examples[i] for i in idx.tolist()]),
                        generator=train_collate.generator)
    val_collate = collator(seed + 1)
    val_order = fixed_batches(len(val_examples), d.batch_size, seed + 1, 0)
    eval_batches = [val_collate([val_examples[i] for i in idx.tolist()])
                    for idx in _eval_take(val_order, recipe.eval.batches)]
    fields = {"vocab_size": tokenizer.vocab_size, "pad_token_id": ids["pad"]}
    return TrainingData(tokenizer, train, eval_batches, fields)


def _check_nsp_documents(train_docs: list[list[list[int]]], val_docs: list[list[list[int]]], files: list[Path],
                         recipe: Recipe) -> None:
    """NSP needs, in training and in validation, 2 documents (files) and one with 2 segments (a true next one)."""
    d = recipe.data
    budget = (d.max_length - 3) // 2
    if len([doc for doc in train_docs if doc]) < 2:
        raise ValueError(f"only one of the {len(files)} data.text files holds text, and next-sentence prediction "
                         "takes its random next sentences from another document; list 2 or more files with text")
    if not any(len(doc) >= 2 for doc in train_docs):
        raise ValueError(f"no data.text file gives two segments of whole lines (up to {budget} tokens each with "
                         f"data.max_length={d.max_length}), so there is no true next sentence; use longer files "
                         f"(several lines each) or lower data.max_length")
    if len(val_docs) < 2 or not any(len(doc) >= 2 for doc in val_docs):
        raise ValueError(f"data.val_fraction={d.val_fraction} leaves too little held-out text for next-sentence "
                         f"pairs (2 files with held-out text, one with 2 segments); raise data.val_fraction")


class _PlainMLM(MLMCollator):
    """Masked LM without NSP: examples are dicts with `input_ids` ([CLS] segment [SEP])."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:  # type: ignore[override]
        ids, attention_mask = pad_ids([e["input_ids"] for e in examples], self.pad_token_id)
        masked, labels = self.mask(ids, attention_mask)
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


# --------------------------------------------------------------------------------------------- translation


def _pairs(recipe: Recipe) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    d = recipe.data
    if d.corpus == "numbers":
        train = number_pairs("train", limit=d.train_pairs)
        if d.small_numbers:  # a hash sample is almost all 6-digit numbers; add every short one of the split
            drawn = set(split_numbers("train", limit=d.train_pairs).tolist())
            small = [n for n in split_numbers("train").tolist() if n < d.small_numbers and n not in drawn]
            train += [(english_number(n), german_number(n)) for n in sorted(small)]
        return (train, number_pairs("validation", limit=d.valid_pairs), number_pairs("test", limit=d.test_pairs))

    def read(source: str | None, target: str | None, what: str, required: bool) -> list[tuple[str, str]]:
        if source is None or target is None:
            if required:
                raise ValueError(f"translation needs data.{what}_source and data.{what}_target (parallel files)")
            return []
        src, tgt = read_lines(recipe.data_path(source)), read_lines(recipe.data_path(target))
        if len(src) != len(tgt):
            raise ValueError(f"{source} has {len(src)} lines but {target} has {len(tgt)}; they must be aligned")
        return list(zip(src, tgt, strict=True))

    return (read(d.train_source, d.train_target, "train", True), read(d.valid_source, d.valid_target, "valid", True),
            read(d.test_source, d.test_target, "test", False))


def translation_data(recipe: Recipe, run_dir: Path, log: Callable[[str], Any], *,
                     decoder_only: bool) -> TrainingData:
    """Parallel pairs for the encoder-decoder, or (`decoder_only`) joined source [SEP] target rows for T-D."""
    d = recipe.data
    train_pairs, valid_pairs, test_pairs = _pairs(recipe)
    if d.lowercase:
        train_pairs, valid_pairs, test_pairs = ([(s.lower(), t.lower()) for s, t in pairs]
                                                for pairs in (train_pairs, valid_pairs, test_pairs))
    sample = train_pairs[:d.tokenizer_pairs] if d.tokenizer_pairs else train_pairs
    tokenizer = _tokenizer(recipe, run_dir, lambda: iter([[s for s, _ in sample], [t for _, t in sample]]),
                           TRANSLATION_SPECIALS, log)
    ids = {role: tokenizer.token_to_id(token) for role, token in
           (("pad", "[PAD]"), ("bos", "[BOS]"), ("eos", "[EOS]"), ("sep", "[SEP]"))}
    if None in ids.values():
        raise ValueError(f"the tokenizer lacks one of {TRANSLATION_SPECIALS[:1] + TRANSLATION_SPECIALS[2:]}; "
                         f"train it from the recipe (data.tokenizer = bpe, char, word or wordpiece)")
    if not decoder_only and tokenizer.backend.post_processor is None:
        # a source ends with [EOS] in training; with this, tokenizer.encode(text) adds it as Marian's does, so
        # `tformer translate --model RUN/final` feeds the model what it was trained on
        tokenizer.backend.post_processor = processors.TemplateProcessing(
            single="$A [EOS]", special_tokens=[("[EOS]", ids["eos"])])
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)

    def corpus(pairs: list[tuple[str, str]]) -> ParallelCorpus:
        sources = tokenizer.encode_batch([s for s, _ in pairs], padding=False, add_special_tokens=False,
                                         return_tensors=None)["input_ids"]
        targets = tokenizer.encode_batch([t for _, t in pairs], padding=False, add_special_tokens=False,
                                         return_tensors=None)["input_ids"]
        if decoder_only:  # source [SEP] target [EOS] in one row
            keep = [i for i in range(len(pairs)) if len(sources[i]) + len(targets[i]) + 2 <= d.max_length]
        else:  # each side plus its end token (the decoder also reads the start token)
            keep = [i for i in range(len(pairs)) if max(len(sources[i]), len(targets[i])) + 1 <= d.max_length]
        if not keep:
            raise ValueError(f"none of {len(pairs)} pairs fits data.max_length={d.max_length} tokens; raise "
                             f"data.max_length (and model.config.max_positions) or use a subword tokenizer")
        return ParallelCorpus([[*sources[i], ids["eos"]] for i in keep], [[*targets[i], ids["eos"]] for i in keep])

    train_corpus, valid_corpus = corpus(train_pairs), corpus(valid_pairs)
    log(f"data: {len(train_corpus):,} training and {len(valid_corpus):,} validation pairs (of "
        f"{len(train_pairs):,} / {len(valid_pairs):,}; pairs over data.max_length={d.max_length} tokens dropped); "
        f"tokenizer {tokenizer.kind} with {tokenizer.vocab_size:,} tokens")
    seed = recipe.train.seed
    if not decoder_only:
        train = seq2seq_stream(train_corpus, batch_size=d.batch_size, max_tokens=d.max_tokens, pad_id=ids["pad"],
                               start_id=ids["bos"], seed=seed)
        val = seq2seq_stream(valid_corpus, batch_size=d.batch_size, max_tokens=d.max_tokens, pad_id=ids["pad"],
                             start_id=ids["bos"], seed=seed)
        eval_order = val.order(0)
        eval_batches = [val.collate(idx) for idx in _eval_take(eval_order, recipe.eval.batches)]
        fields = {"vocab_size": tokenizer.vocab_size, "pad_token_id": ids["pad"], "bos_token_id": ids["bos"],
                  "eos_token_id": ids["eos"], "decoder_start_token_id": ids["bos"]}
    else:
        train = decoder_pairs_stream(train_corpus, batch_size=d.batch_size, max_tokens=d.max_tokens,
                                     sep_id=ids["sep"], pad_id=ids["pad"], seed=seed)
        eval_order = fixed_batches(len(valid_corpus), d.batch_size, seed, 0, shuffle=False)
        eval_batches = [joined_pairs(valid_corpus, idx, sep_id=ids["sep"], pad_id=ids["pad"])
                        for idx in _eval_take(eval_order, recipe.eval.batches)]
        fields = {"vocab_size": tokenizer.vocab_size, "pad_token_id": ids["pad"], "bos_token_id": ids["bos"],
                  "eos_token_id": ids["eos"]}
    return TrainingData(tokenizer, train, eval_batches, fields, valid_pairs=valid_pairs, test_pairs=test_pairs,
                        encode_source=encode)


def tokens_in(batch: dict[str, Tensor]) -> int:
    """Tokens a batch feeds the model (for tokens/s): the attended positions of every input."""
    total = 0
    for ids, mask in (("input_ids", "attention_mask"), ("decoder_input_ids", "decoder_attention_mask")):
        if ids in batch:
            total += int(batch[mask].sum()) if mask in batch else batch[ids].numel()
    return total
