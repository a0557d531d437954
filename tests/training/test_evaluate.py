"""Translation scores on hand-written hypotheses and references: BLEU from the n-gram counts, exact match."""

from __future__ import annotations

import math

import pytest

from tformer.training.evaluate import bleu, exact_match


def test_sentence_bleu_is_the_geometric_mean_of_the_counted_precisions() -> None:
    # 13a tokens: the cat sat on a mat / the cat sat on the mat. Matched 1- to 4-grams: 5/6, 3/5, 2/4, 1/3; same
    # length, so no brevity penalty: BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** (1/4)
    assert bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(100 * (1 / 12) ** 0.25)
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)


def test_corpus_bleu_sums_the_counts_of_all_sentences_before_dividing() -> None:
    # second pair: "a dog ran" / "the dog ran home": 2/3, 1/2, 0/1, 0/0 matched. Corpus: (5+2)/(6+3), (3+1)/(5+2),
    # (2+0)/(4+1), (1+0)/(3+0); 9 hypothesis tokens for 10 reference tokens: brevity penalty exp(1 - 10/9)
    expected = math.exp(1 - 10 / 9) * (7 / 9 * 4 / 7 * 2 / 5 * 1 / 3) ** 0.25
    hypotheses = ["the cat sat on a mat", "a dog ran"]
    references = ["the cat sat on the mat", "the dog ran home"]
    assert bleu(hypotheses, references) == pytest.approx(100 * expected)
    # the mean of the two sentence scores would be another number: the corpus figure is not an average
    assert bleu(hypotheses, references) != pytest.approx((bleu(hypotheses[:1], references[:1]) +
                                                          bleu(hypotheses[1:], references[1:])) / 2)


def test_character_bleu_counts_character_n_grams() -> None:
    # abcde / abcdf: 4/5, 3/4, 2/3, 1/2 matched -> (1/5) ** (1/4); word BLEU of one wrong word would be 0
    assert bleu(["abcde"], ["abcdf"], tokenize="char") == pytest.approx(100 * 0.2 ** 0.25)


def test_exact_match_is_the_fraction_of_identical_hypotheses() -> None:
    hypotheses = ["eins", " zwei ", "drei", "vier"]  # surrounding whitespace does not count
    references = ["eins", "zwei", "drei", "fünf"]
    assert exact_match(hypotheses, references) == 0.75
    assert exact_match(["Eins"], ["eins"]) == 0.0  # case does
    assert exact_match(["zweiundzwanzig"], ["zwei und zwanzig"]) == 0.0
    assert math.isnan(exact_match([], []))
    with pytest.raises(ValueError):
        exact_match(["eins"], ["eins", "zwei"])
