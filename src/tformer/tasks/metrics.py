"""Scores of the fine-tuning tasks, from the standard libraries that papers' numbers come from.

* classification: accuracy, binary F1 (positive class 1, MRPC), Matthews correlation (CoLA), from scikit-learn;
* regression: Pearson and Spearman correlation (STS-B), from scipy;
* extractive QA: SQuAD v1.1 exact match and F1, the official evaluation script's answer normalisation (lower case,
  punctuation and the articles a/an/the removed, whitespace collapsed) and maximum over the reference answers;
* NER: entity-level precision, recall and F1 from `seqeval` (conlleval's rules: an entity counts only when its
  type and both ends are right).

Every score is a fraction in [0, 1] (SQuAD's script prints 100x). `compute_metrics(names, predictions, references)`
scores by the names a task lists (`Task.metrics`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from scipy import stats
from seqeval import metrics as seqeval_metrics
from sklearn import metrics as sklearn_metrics

PUNCTUATION = frozenset(string.punctuation)


def _check(predictions: Sequence, references: Sequence, what: str) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references for {what}; "
                         "give one prediction per example")
    if len(references) == 0:
        raise ValueError(f"no examples to score {what} on; the evaluation split is empty")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Fraction of predicted classes equal to the reference."""
    _check(predictions, references, "accuracy")
    return float(sklearn_metrics.accuracy_score(references, predictions))


def f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Binary F1 of class 1 (GLUE's MRPC score): 2PR / (P + R); 0 when class 1 is never predicted nor present."""
    _check(predictions, references, "f1")
    return float(sklearn_metrics.f1_score(references, predictions, pos_label=1, average="binary", zero_division=0))


def matthews_correlation(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation coefficient (GLUE's CoLA score), in [-1, 1]; 0 when either side is constant."""
    _check(predictions, references, "Matthews correlation")
    return float(sklearn_metrics.matthews_corrcoef(references, predictions))


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation of predicted and reference scores (STS-B); NaN when either side is constant."""
    _check(predictions, references, "Pearson correlation")
    return float(stats.pearsonr(predictions, references).statistic) if len(references) > 1 else float("nan")


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman rank correlation of predicted and reference scores (STS-B); NaN when either side is constant."""
    _check(predictions, references, "Spearman correlation")
    return float(stats.spearmanr(predictions, references).statistic) if len(references) > 1 else float("nan")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lower case, no punctuation, no a/an/the, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(reference).split()
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def _squad(score: Callable[[str, str], float], predictions: Sequence[str],
           references: Sequence[Sequence[str]], what: str) -> float:
    _check(predictions, references, what)
    for i, answers in enumerate(references):
        if isinstance(answers, str) or not answers:
            raise ValueError(f"references[{i}] is {answers!r}; give each question a list of reference answer texts")
    best = [max(score(p, r) for r in answers) for p, answers in zip(predictions, references, strict=True)]
    return sum(best) / len(best)


def squad_exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Fraction of questions whose normalised predicted answer equals one of its normalised references."""
    return _squad(lambda p, r: float(normalize_answer(p) == normalize_answer(r)), predictions, references,
                  "SQuAD exact match")


def squad_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over questions of the best bag-of-words F1 between the normalised prediction and a reference."""
    return _squad(_token_f1, predictions, references, "SQuAD F1")


def _entity(name: str, score: Callable) -> Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]]], float]:
    def entity_score(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
        _check(predictions, references, f"entity {name}")
        for i, (predicted, wanted) in enumerate(zip(predictions, references, strict=True)):
            if len(predicted) != len(wanted):
                raise ValueError(f"sentence {i}: {len(predicted)} predicted tags for {len(wanted)} words; "
                                 "predict one tag per word (map sub-word predictions back with word_tags)")
        return float(score([list(r) for r in references], [list(p) for p in predictions], zero_division=0))

    entity_score.__name__ = f"entity_{name}"
    entity_score.__doc__ = f"Entity-level {name} over IOB2 tag sequences, one list of tags per sentence (seqeval)."
    return entity_score


entity_f1 = _entity("f1", seqeval_metrics.f1_score)
entity_precision = _entity("precision", seqeval_metrics.precision_score)
entity_recall = _entity("recall", seqeval_metrics.recall_score)

METRICS: dict[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy, "f1": f1, "matthews_correlation": matthews_correlation,
    "pearson": pearson, "spearman": spearman,
    "exact_match": squad_exact_match, "squad_f1": squad_f1,
    "entity_f1": entity_f1, "entity_precision": entity_precision, "entity_recall": entity_recall,
}


def compute_metrics(names: Sequence[str], predictions: Sequence, references: Sequence) -> dict[str, float]:
    """{name: score} for each metric name (a task's `metrics`), all on the same predictions and references."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return {name: METRICS[name](predictions, references) for name in names}
