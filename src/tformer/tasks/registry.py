"""The fine-tuning tasks by name: which files of the data folder they read, their labels, problem kind and metrics.

`TASKS["rte"].read("train")` (or `read_task("rte", "train", root)`) returns the examples of a split. Files are
found under the data root (`--data DIR`, else $TFORMER_DATA, else ../shared/data), `.gz` or plain.

Splits are `train` and `dev` (CoNLL-2003 also has `test`). Where the data folder has no training file, the splits
are cut deterministically from what is there, and `Task.note` says how:

* QNLI (only GLUE's dev.tsv is here): a question goes to `dev` when crc32 of its text is divisible by 5 (about a
  fifth), else to `train`; a question's rows never straddle the two.
* SQuAD v1.1 (only dev-v1.1.json is here): its first 40 articles are `train`, the last 8 `dev`.
* COPA: `train` is train.jsonl + unlabeled.jsonl (the 400 SuperGLUE training rows, all labelled), `dev` val.jsonl.
* SWAG is not in the shared folder; put rowanz/swagaf's train.csv and val.csv in `swag/` to use it.
"""

from __future__ import annotations

import difflib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from tformer.tasks.readers import (
    TextExample,
    read_commonsenseqa,
    read_conll,
    read_copa,
    read_glue_tsv,
    read_squad,
    read_swag,
)

Kind = Literal["classification", "regression", "multiple_choice", "qa", "token_classification"]
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
SQUAD_TRAIN_ARTICLES = 40


@dataclass(frozen=True)
class Task:
    """A fine-tuning task (seed: classification, entailment, similarity, multiple choice, QA, NER) by name.

    `files[split]` are paths under the data root, read by `reader` (path -> examples) and joined; `select[split]`,
    when present, keeps part of them (the derived splits). `labels` are the class names in index order (the choice
    names for multiple choice; empty for regression and QA); `metrics` name functions of `tformer.tasks.metrics`.
    """

    name: str
    kind: Kind
    reader: Callable[[Path], list]
    files: dict[str, tuple[str, ...]]
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    select: dict[str, Callable[[list], list]] = field(default_factory=dict)
    note: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    @property
    def num_labels(self) -> int:
        """Outputs of the task's head per position scored: classes, 1 score (regression, and per choice for multiple
        choice), 2 (start and end logits) for QA, tags for token classification."""
        return {"regression": 1, "multiple_choice": 1, "qa": 2}.get(self.kind, len(self.labels))

    def check_head(self, num_labels: int) -> None:
        """Raise a one-line error when a head with `num_labels` outputs cannot score this task's labels."""
        if num_labels != self.num_labels:
            named = self.kind in ("classification", "token_classification")
            what = f"labels {list(self.labels)}" if named else f"a {self.kind} head of {self.num_labels}"
            raise ValueError(f"the model's head has num_labels={num_labels} but {self.name} needs {self.num_labels} "
                             f"({what}); start from a model without this head, or one fine-tuned on {self.name}")

    def paths(self, split: str, root: str | os.PathLike | None = None) -> list[Path]:
        """The files of `split`, checked to exist (a one-line error names the folder, the file and the fix)."""
        if split not in self.files:
            raise ValueError(f"task {self.name!r} has no split {split!r}; choose one of {', '.join(self.splits)}")
        from tformer.training.recipe import data_root  # here, so that training/ may import tasks/ without a cycle

        base = data_root(None if root is None else str(root))
        return [_find(base, name, self.name) for name in self.files[split]]

    def read(self, split: str, root: str | os.PathLike | None = None) -> list[Any]:
        """The examples of `split` (TextExample, ChoiceExample, QAExample or NERSentence, by kind)."""
        paths = self.paths(split, root)
        examples = [example for path in paths for example in self.reader(path)]
        if split in self.select:
            examples = self.select[split](examples)
        if not examples:
            raise ValueError(f"{self.name} {split}: {', '.join(map(str, paths))} holds no examples; "
                             "is it the right (non-empty) file?")
        return examples


def _find(root: Path, name: str, task: str) -> Path:
    stem = name.removesuffix(".gz")
    for candidate in (name, stem) if name.endswith(".gz") else (name, f"{name}.gz"):
        if (root / candidate).is_file():
            return root / candidate
    folder, file = root / Path(name).parent, Path(name).name
    other = file.removesuffix(".gz") if file.endswith(".gz") else f"{file}.gz"
    raise FileNotFoundError(f"{task}: {folder} has no {file} (or {other}); point --data DIR (or TFORMER_DATA) at the "
                            f"data folder that holds {Path(name).parent}/ (see its README)")


def _qnli_part(examples: list[TextExample], dev: bool) -> list[TextExample]:
    return [e for e in examples if (zlib.crc32(e.text_a.encode("utf-8")) % 5 == 0) == dev]


def _by_article(examples: list, dev: bool) -> list:
    titles = list(dict.fromkeys(e.title for e in examples))  # article order, as in the file
    train = set(titles[:SQUAD_TRAIN_ARTICLES])
    return [e for e in examples if (e.title not in train) == dev]


def _glue(name: str, folder: str, text_a: str | int, text_b: str | int | None, label: str | int,
          values: tuple[str, ...] | None, labels: tuple[str, ...], metrics: tuple[str, ...],
          header: bool = True) -> Task:
    reader = partial(read_glue_tsv, text_a=text_a, text_b=text_b, label=label, label_values=values, header=header)
    files = {split: (f"glue/{folder}/{split}.tsv.gz",) for split in ("train", "dev")}
    return Task(name, "classification" if values else "regression", reader, files, labels, metrics)


_ENTAIL = ("entailment", "not_entailment")
_qnli = _glue("qnli", "QNLI", "question", "sentence", "label", _ENTAIL, _ENTAIL, ("accuracy",))

TASKS: dict[str, Task] = {task.name: task for task in (
    _glue("sst2", "SST-2", "sentence", None, "label", ("0", "1"), ("negative", "positive"), ("accuracy",)),
    _glue("cola", "CoLA", 3, None, 1, ("0", "1"), ("unacceptable", "acceptable"), ("matthews_correlation",),
          header=False),
    _glue("mrpc", "MRPC", "#1 String", "#2 String", "Quality", ("0", "1"), ("not_equivalent", "equivalent"),
          ("accuracy", "f1")),
    _glue("stsb", "STS-B", "sentence1", "sentence2", "score", None, (), ("pearson", "spearman")),
    _glue("rte", "RTE", "sentence1", "sentence2", "label", _ENTAIL, _ENTAIL, ("accuracy",)),
    _glue("wnli", "WNLI", "sentence1", "sentence2", "label", ("0", "1"), ("not_entailment", "entailment"),
          ("accuracy",)),
    Task("qnli", "classification", _qnli.reader, {"train": ("glue/QNLI/dev.tsv.gz",), "dev": ("glue/QNLI/dev.tsv.gz",)},
         _ENTAIL, ("accuracy",), {"train": partial(_qnli_part, dev=False), "dev": partial(_qnli_part, dev=True)},
         "only GLUE's QNLI dev.tsv is here: a question goes to dev when crc32(question) % 5 == 0, else to train"),
    Task("commonsenseqa", "multiple_choice", read_commonsenseqa,
         {"train": ("commonsenseqa/train_rand_split.jsonl.gz",), "dev": ("commonsenseqa/dev_rand_split.jsonl.gz",)},
         ("A", "B", "C", "D", "E"), ("accuracy",)),
    Task("copa", "multiple_choice", read_copa,
         {"train": ("copa/train.jsonl.gz", "copa/unlabeled.jsonl.gz"), "dev": ("copa/val.jsonl.gz",)},
         ("choice1", "choice2"), ("accuracy",), note="train is train.jsonl + unlabeled.jsonl (both labelled)"),
    Task("swag", "multiple_choice", read_swag, {"train": ("swag/train.csv",), "dev": ("swag/val.csv",)},
         ("ending0", "ending1", "ending2", "ending3"), ("accuracy",),
         note="not in the shared data folder: put rowanz/swagaf's data/train.csv and val.csv in DATA/swag/"),
    Task("squad", "qa", read_squad,
         {"train": ("squad-v1.1/dev-v1.1.json.gz",), "dev": ("squad-v1.1/dev-v1.1.json.gz",)}, (),
         ("exact_match", "squad_f1"),
         {"train": partial(_by_article, dev=False), "dev": partial(_by_article, dev=True)},
         f"only SQuAD v1.1 dev is here: its first {SQUAD_TRAIN_ARTICLES} articles are train, the rest dev"),
    Task("conll2003", "token_classification", partial(read_conll, tags=CONLL_TAGS),
         {"train": ("conll2003/train.txt.gz",), "dev": ("conll2003/valid.txt.gz",),
          "test": ("conll2003/test.txt.gz",)}, CONLL_TAGS, ("entity_f1", "entity_precision", "entity_recall")),
)}


def get_task(name: str) -> Task:
    """The task called `name` (e.g. "rte"); an unknown name is an error listing the known ones."""
    key = name.lower().replace("-", "").replace("_", "")
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, TASKS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown task {name!r}; {hint}tasks: {', '.join(TASKS)}")


def read_task(name: str, split: str, root: str | os.PathLike | None = None) -> list[Any]:
    """The examples of split `split` of task `name`, read from the data root (see `Task.read`)."""
    return get_task(name).read(split, root)
