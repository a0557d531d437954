"""The task metrics give the published definitions' values on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from tformer.tasks.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    entity_f1,
    entity_precision,
    entity_recall,
    f1,
    matthews_correlation,
    normalize_answer,
    pearson,
    spearman,
    squad_exact_match,
    squad_f1,
)

PREDICTED = [1, 0, 1, 1, 0]
WANTED = [1, 0, 0, 1, 1]  # TP 2, TN 1, FP 1, FN 1


def test_classification_scores_match_hand_counts():
    assert accuracy(PREDICTED, WANTED) == pytest.approx(3 / 5)
    assert f1(PREDICTED, WANTED) == pytest.approx(2 / 3)  # P = R = 2/3
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3 * 3 * 2 * 2)
    assert matthews_correlation(PREDICTED, WANTED) == pytest.approx(1 / 6)


def test_f1_is_of_the_positive_class_and_matthews_is_zero_for_a_constant_guess():
    assert f1([0, 0, 0], [1, 0, 1]) == 0.0
    assert f1([0, 1, 1], [1, 0, 0]) == 0.0
    assert matthews_correlation([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert matthews_correlation([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


def test_correlations_match_hand_computed_values():
    # x = 1, 2, 3; y = 1, 2, 4: cov = 3, var_x = 2, var_y = 42/9 (sums over 3 points) -> r = 9 / sqrt(84)
    assert pearson([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(9 / math.sqrt(84))
    assert spearman([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    # rank differences -2, 1, 1: rho = 1 - 6 * 6 / (3 * (9 - 1)) = -0.5
    assert spearman([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]) == pytest.approx(-0.5)


def test_squad_normalisation_is_the_official_one():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear and the plum.") == "apple pear and plum"
    assert normalize_answer("Theatre") == "theatre"  # "the" only as a whole word


def test_squad_exact_match_and_f1_take_the_best_reference():
    assert squad_exact_match(["the Eiffel tower"], [["Eiffel Tower."]]) == 1.0
    assert squad_exact_match(["Paris"], [["Paris, France"]]) == 0.0
    # "in Paris France" vs "Paris": P 1/3, R 1 -> 0.5; vs "Paris, France": P 2/3, R 1 -> 0.8; the max is taken
    assert squad_f1(["in Paris France"], [["Paris"]]) == pytest.approx(0.5)
    assert squad_f1(["in Paris France"], [["Paris", "Paris, France"]]) == pytest.approx(0.8)
    assert squad_f1(["London"], [["Paris"]]) == 0.0
    # the mean over questions
    assert squad_f1(["in Paris France", "1889"], [["Paris"], ["1889"]]) == pytest.approx(0.75)
    assert squad_exact_match(["in Paris France", "1889"], [["Paris"], ["1889"]]) == pytest.approx(0.5)


def test_squad_answers_that_normalise_to_nothing_score_zero_unless_both_do():
    assert squad_f1(["a an the"], [["the dog"]]) == 0.0
    assert squad_exact_match(["The."], [["a"]]) == 1.0  # both normalise to "", as in the official script


def test_entity_scores_count_whole_entities():
    wanted = [["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-MISC", "O"]]  # 3 entities each side, 2 right
    assert entity_f1(predicted, wanted) == pytest.approx(2 / 3)
    assert entity_precision(predicted, wanted) == pytest.approx(2 / 3)
    assert entity_recall(predicted, wanted) == pytest.approx(2 / 3)
    # half an entity is no entity: PER(0..0) is not PER(0..1); precision 1/2 (MISC right), recall 1/3
    cut = [["B-PER", "O", "O", "O"], ["B-MISC", "O"]]
    assert entity_precision(cut, wanted) == pytest.approx(1 / 2)
    assert entity_recall(cut, wanted) == pytest.approx(1 / 3)
    assert entity_f1(cut, wanted) == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_entity_f1_follows_conlleval_for_an_entity_starting_with_i():
    assert entity_f1([["I-LOC", "O"]], [["B-LOC", "O"]]) == 1.0


def test_mismatched_lengths_are_one_line_errors():
    with pytest.raises(ValueError, match="3 predictions but 2 references") as error:
        accuracy([1, 0, 1], [1, 0])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags for 2 words"):
        entity_f1([["O"]], [["O", "B-PER"]])
    with pytest.raises(ValueError, match="list of reference answer texts"):
        squad_f1(["Paris"], ["Paris"])
    with pytest.raises(ValueError, match="evaluation split is empty"):
        accuracy([], [])


def test_compute_metrics_scores_by_name():
    scores = compute_metrics(("accuracy", "f1"), PREDICTED, WANTED)
    assert scores == {"accuracy": pytest.approx(0.6), "f1": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        compute_metrics(("bleu",), PREDICTED, WANTED)
    assert set(METRICS) >= {"matthews_correlation", "pearson", "spearman", "exact_match", "squad_f1", "entity_f1"}
