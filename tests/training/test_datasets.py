"""Recipe data: the number corpus keeps its splits apart; small numbers can be added to training."""

from __future__ import annotations

from tformer.data.synthetic import english_number, number_split
from tformer.training.datasets import _pairs
from tformer.training.recipe import load_recipe


def test_small_numbers_join_training_without_leaking_held_out_ones() -> None:
    base = {"model": {"preset": "transformer-tiny"}, "train": {"objective": "seq2seq"},
            "data": {"corpus": "numbers", "train_pairs": 500, "valid_pairs": 10, "test_pairs": 10}}
    plain, _, test = _pairs(load_recipe(base))
    with_small, _, _ = _pairs(load_recipe(base, ["--data.small_numbers=1000"]))
    assert with_small[:500] == plain
    added = with_small[500:]
    english = {english_number(n): n for n in range(1000)}
    assert added and all(english[s] < 1000 and number_split(english[s]) == "train" for s, _ in added)
    assert len({s for s, _ in with_small}) == len(with_small)  # no pair twice
    assert not {s for s, _ in test} & {s for s, _ in with_small}
    assert ("three hundred twenty-one", "dreihunderteinundzwanzig") in with_small or number_split(321) != "train"
