"""Tiny fine-tuning inputs the tests write: a data folder in the GLUE / COPA / SQuAD / CoNLL formats the shared one
uses, and small BERT and GPT model folders with tokenizers trained on that text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

import tformer
from tformer.config import ModelConfig

GOOD = ["great", "wonderful", "moving", "charming", "superb", "lovely"]
BAD = ["dull", "boring", "awful", "tedious", "clumsy", "bland"]
NOUNS = ["film", "story", "cast", "plot", "ending", "script"]
NAMES = ["paris", "london", "berlin", "madrid", "rome", "vienna"]
PEOPLE = ["anna", "marco", "lena", "tom", "sara", "ivan"]


def _sentence(rng: random.Random, positive: bool) -> str:
    return f"the {rng.choice(NOUNS)} was {rng.choice(GOOD if positive else BAD)}"


def _tsv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(map(str, row)) for row in [header, *rows]) + "\n", encoding="utf-8")


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_data(root: Path, seed: int = 0) -> Path:
    """SST-2, STS-B and RTE (GLUE TSV), COPA (JSON lines), SQuAD v1.1 (48 one-question articles: 40 train, 8
    dev) and CoNLL-2003 under `root`, each a learnable toy version of the task."""
    rng = random.Random(seed)
    for split, n in (("train", 64), ("dev", 24)):
        labels = [i % 2 for i in range(n)]
        _tsv(root / f"glue/SST-2/{split}.tsv", ["sentence", "label"], [[_sentence(rng, y == 1), y] for y in labels])
        rows = []
        for i in range(n):
            a, b = _sentence(rng, i % 2 == 0), _sentence(rng, i % 3 == 0)
            rows.append([i, "main", "f", "2012", i, "none", "none", a, b, f"{(5.0 if a == b else 2.5 * (i % 3)):.3f}"])
        _tsv(root / f"glue/STS-B/{split}.tsv", ["index", "genre", "filename", "year", "old_index", "source1",
                                                 "source2", "sentence1", "sentence2", "score"], rows)
        rte = [[i, _sentence(rng, i % 2 == 0), f"it was {rng.choice(GOOD if i % 4 < 2 else BAD)}",
                "entailment" if (i % 2 == 0) == (i % 4 < 2) else "not_entailment"] for i in range(n)]
        _tsv(root / f"glue/RTE/{split}.tsv", ["index", "sentence1", "sentence2", "label"], rte)
    copa = []
    for i in range(40):
        label = i % 2
        good, bad = f"the {rng.choice(NOUNS)} was {rng.choice(GOOD)}", f"the {rng.choice(NOUNS)} was {rng.choice(BAD)}"
        choices = [bad, good] if label else [good, bad]
        copa.append({"premise": f"{rng.choice(PEOPLE)} smiled", "choice1": choices[0], "choice2": choices[1],
                     "question": "cause", "label": label, "idx": i})
    _jsonl(root / "copa/train.jsonl", copa[:24])
    _jsonl(root / "copa/unlabeled.jsonl", copa[24:32])
    _jsonl(root / "copa/val.jsonl", copa[32:])
    articles = []
    for i in range(48):
        person, city = PEOPLE[i % 6], NAMES[(i * 5) % 6]
        context = f"{person} lives in {city} . the {rng.choice(NOUNS)} was {rng.choice(GOOD)} ."
        articles.append({"title": f"article_{i}", "paragraphs": [{"context": context, "qas": [{
            "id": f"q{i}", "question": f"where does {person} live ?",
            "answers": [{"text": city, "answer_start": context.index(city)}]}]}]})
    squad = root / "squad-v1.1/dev-v1.1.json"
    squad.parent.mkdir(parents=True, exist_ok=True)
    squad.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    for split, n in (("train", 48), ("valid", 16)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(n):
            person, city = rng.choice(PEOPLE), rng.choice(NAMES)
            lines += [f"{person} NNP B-NP B-PER", "visited VBD B-VP O", f"{city} NNP B-NP B-LOC", ". . O O", ""]
        (root / f"conll2003/{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"conll2003/{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def corpus() -> list[str]:
    words = " ".join(GOOD + BAD + NOUNS + NAMES + PEOPLE)
    return [words, "the was it lives in where does live ? . smiled visited", "what was the cause of this ?"] * 4


def write_model(folder: Path, family: str = "bert", seed: int = 0, **config: object) -> Path:
    """A tiny pre-trained-shaped model folder (config.json, model.safetensors, tokenizer.json): BERT with a
    WordPiece tokenizer and its pre-training heads, or GPT-1 with a word-level tokenizer; `config` overrides
    ModelConfig fields (dropout=0.0 for runs that must match exactly)."""
    kind = "wordpiece" if family == "bert" else "word"
    tokenizer = tformer.Tokenizer.train(iter(corpus()), kind=kind, vocab_size=200)
    preset = "bert-tiny" if family == "bert" else "gpt1-tiny"
    torch.manual_seed(seed)
    config = ModelConfig.preset(preset, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                **config)
    tformer.save_pretrained(tformer.build_model(config), folder, tokenizer=tokenizer)
    return folder
