"""Readers for the fine-tuning datasets, each file format to plain typed examples.

* GLUE (`read_glue_tsv`): tab-separated, read with `csv.QUOTE_NONE` (sentences hold bare `"`), with or without a
  header; columns chosen by name or position; a class label from the file's own values, or a float score.
* Multiple choice: CommonsenseQA JSON lines (`read_commonsenseqa`, question -> 5 choices), SuperGLUE COPA JSON lines
  (`read_copa`, premise + "cause"/"effect" -> 2 choices), SWAG's CSV as rowanz/swagaf ships it (`read_swag`,
  sent1 -> sent2 + ending0..3).
* Extractive QA: the official SQuAD v1.1 JSON (`read_squad`), one example per question.
* NER: CoNLL-2003 (`read_conll`), one `WORD POS CHUNK TAG` per line, sentences split by blank lines.

Every reader takes a path, plain or `.gz` (decompressed as it is read), and raises a one-line error naming the
file, the line and the fix when a row is not in the expected format or a label is not one the task knows.
`tformer.tasks.registry` knows which files each task reads from the data folder.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class TextExample:
    """A sentence or sentence pair to classify or score (seed: classification, entailment, similarity).

    `text_a`, `text_b` (None for single-sentence tasks) and `label`: the class index into the task's labels, or a
    float score for regression (STS-B, 0-5).
    """

    text_a: str
    text_b: str | None
    label: int | float


@dataclass
class ChoiceExample:
    """A multiple-choice question (seed: multiple choice): a context, N candidate continuations, the right one.

    `context` is paired with each of the N `choices`; `label` is the index of the right choice (0..N-1).
    """

    context: str
    choices: list[str]
    label: int
    id: str = ""


@dataclass
class QAExample:
    """An extractive question (seed: QA as span extraction): the answer is a character span of `context`.

    `answers` holds the reference answers as (text, answer_start) with `context[start:start + len(text)] == text`;
    training uses the first, evaluation scores against all of them.
    """

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    title: str = ""


@dataclass
class NERSentence:
    """A sentence for named-entity recognition (seed: NER as token classification): words and one tag per word.

    `tokens[i]` has the IOB2 tag `tags[i]` (e.g. B-PER, I-PER, O).
    """

    tokens: list[str]
    tags: list[str]


class DataFormatError(ValueError):
    """A data file that does not have the format or the labels its task expects."""


@contextmanager
def open_text(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A UTF-8 text file for reading, `.gz` decompressed on the fly, a leading BOM dropped (MRPC has one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file {path}: check the path, or point --data DIR (or TFORMER_DATA) at the "
                                "data folder")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        yield handle


def read_glue_tsv(path: str | os.PathLike, text_a: str | int, text_b: str | int | None, label: str | int,
                  label_values: Sequence[str] | None, header: bool = True) -> list[TextExample]:
    """Rows of a GLUE .tsv as TextExamples. Columns are header names (or 0-based positions when `header=False`,
    as in CoLA); `label_values` are the file's labels in class-index order, or None for a float score."""
    examples = []
    with open_text(path) as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = _header_columns(path, next(rows, []), (text_a, text_b, label)) if header else {}
        index = {key: columns.get(key, key) for key in (text_a, text_b, label) if key is not None}
        width = max(index.values()) + 1
        for line, row in enumerate(rows, start=2 if header else 1):
            if len(row) < width:
                raise DataFormatError(f"{path}:{line}: {len(row)} tab-separated columns, expected at least {width}; "
                                      "is this the task's GLUE .tsv?")
            raw = row[index[label]].strip()
            examples.append(TextExample(row[index[text_a]], None if text_b is None else row[index[text_b]],
                                        _label(path, line, raw, label_values)))
    return examples


def _header_columns(path: str | os.PathLike, header: list[str], wanted: Sequence[str | int | None]) -> dict:
    columns = {name: i for i, name in enumerate(header)}
    for name in wanted:
        if isinstance(name, str) and name not in columns:
            raise DataFormatError(f"{path}: the header has no column {name!r} (it has {header}); "
                                  "is this the task's GLUE .tsv?")
    return columns


def _label(path: str | os.PathLike, line: int, raw: str, label_values: Sequence[str] | None) -> int | float:
    if label_values is None:
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(f"{path}:{line}: score {raw!r} is not a number; "
                                  "a regression task needs a numeric label column") from None
    if raw not in label_values:
        raise DataFormatError(f"{path}:{line}: label {raw!r} is not one of {list(label_values)}; "
                              "the file does not belong to this task or is damaged")
    return list(label_values).index(raw)


def _json_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    with open_text(path) as handle:
        for line, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield line, json.loads(text)
                except json.JSONDecodeError as error:
                    raise DataFormatError(f"{path}:{line}: not a JSON line ({error.msg})") from None


def _field(path: str | os.PathLike, line: int, record: dict, *keys: str):
    value = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise DataFormatError(f"{path}:{line}: no {'.'.join(keys)!r} field; is this the task's file?")
        value = value[key]
    return value


def read_commonsenseqa(path: str | os.PathLike) -> list[ChoiceExample]:
    """CommonsenseQA JSON lines: the question stem is the context, the 5 choices (A-E) the candidates."""
    examples = []
    for line, record in _json_lines(path):
        choices = sorted(_field(path, line, record, "question", "choices"), key=lambda c: c["label"])
        keys = [c["label"] for c in choices]
        answer = _field(path, line, record, "answerKey")
        if answer not in keys:
            raise DataFormatError(f"{path}:{line}: answerKey {answer!r} is not one of the choice labels {keys}")
        examples.append(ChoiceExample(_field(path, line, record, "question", "stem"), [c["text"] for c in choices],
                                      keys.index(answer), record.get("id", "")))
    return examples


COPA_QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}


def read_copa(path: str | os.PathLike) -> list[ChoiceExample]:
    """SuperGLUE COPA JSON lines: context = premise + the question as words ("What was the cause of this?" /
    "What happened as a result?"), choices = [choice1, choice2], label 0 or 1."""
    examples = []
    for line, record in _json_lines(path):
        question = _field(path, line, record, "question")
        if question not in COPA_QUESTIONS:
            raise DataFormatError(f"{path}:{line}: question {question!r} is neither 'cause' nor 'effect'")
        label = _field(path, line, record, "label")
        if label not in (0, 1):
            raise DataFormatError(f"{path}:{line}: label {label!r} is not 0 or 1 (the index of the right choice)")
        context = f"{_field(path, line, record, 'premise')} {COPA_QUESTIONS[question]}"
        choices = [_field(path, line, record, "choice1"), _field(path, line, record, "choice2")]
        examples.append(ChoiceExample(context, choices, label, str(record.get("idx", ""))))
    return examples


SWAG_COLUMNS = ("video-id", "fold-ind", "sent1", "sent2", "ending0", "ending1", "ending2", "ending3", "label")


def read_swag(path: str | os.PathLike) -> list[ChoiceExample]:
    """SWAG's CSV (rowanz/swagaf train.csv / val.csv: `,video-id,fold-ind,startphrase,sent1,sent2,gold-source,
    ending0..3,label`): context = sent1, choice k = sent2 + " " + ending_k, as Hugging Face's run_swag pairs them."""
    examples = []
    with open_text(path) as handle:
        rows = csv.DictReader(handle)
        missing = [c for c in SWAG_COLUMNS if c not in (rows.fieldnames or [])]
        if missing:
            raise DataFormatError(f"{path}: the header lacks SWAG columns {missing}; expected rowanz/swagaf's "
                                  "train.csv / val.csv format (test.csv has no labels)")
        for line, row in enumerate(rows, start=2):
            if row["label"] not in ("0", "1", "2", "3"):
                raise DataFormatError(f"{path}:{line}: label {row['label']!r} is not 0-3 (the index of the ending)")
            choices = [f"{row['sent2']} {row[f'ending{k}']}" for k in range(4)]
            examples.append(ChoiceExample(row["sent1"], choices, int(row["label"]),
                                          f"{row['video-id']}/{row['fold-ind']}"))
    return examples


def read_squad(path: str | os.PathLike, articles: slice = slice(None)) -> list[QAExample]:
    """SQuAD v1.1 JSON: one QAExample per question of the chosen `articles` (a slice of the article list, e.g.
    `slice(0, 40)`), in file order, each answer checked to be the span of the context it claims to be."""
    with open_text(path) as handle:
        try:
            data = json.load(handle)["data"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataFormatError(f"{path}: not SQuAD JSON ({{'version', 'data': [articles]}})") from None
    examples = []
    for article in data[articles]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = [(a["text"], int(a["answer_start"])) for a in qa["answers"]]
                for text, start in answers:
                    if context[start:start + len(text)] != text:
                        raise DataFormatError(f"{path}: question {qa['id']}: answer {text!r} is not at character "
                                              f"{start} of its context; the file is damaged")
                examples.append(QAExample(qa["id"], qa["question"], context, answers, article.get("title", "")))
    return examples


def read_conll(path: str | os.PathLike, tags: Sequence[str] | None = None) -> list[NERSentence]:
    """CoNLL-2003: `WORD POS CHUNK TAG` lines, a blank line ends a sentence, `-DOCSTART-` lines are skipped.
    With `tags`, a tag outside that list is an error."""
    sentences: list[NERSentence] = []
    words: list[str] = []
    labels: list[str] = []
    known = set(tags) if tags is not None else None
    with open_text(path) as handle:
        for line, text in enumerate(handle, start=1):
            fields = text.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append(NERSentence(words, labels))
                words, labels = [], []
                continue
            if len(fields) < 2:
                raise DataFormatError(f"{path}:{line}: {text.strip()!r} has no tag; expected 'WORD POS CHUNK TAG'")
            if known is not None and fields[-1] not in known:
                raise DataFormatError(f"{path}:{line}: tag {fields[-1]!r} is not one of {list(tags)}")
            words.append(fields[0])
            labels.append(fields[-1])
    if words:
        sentences.append(NERSentence(words, labels))
    return sentences
