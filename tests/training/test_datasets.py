"""Recipe data: the number corpus keeps its splits apart; small numbers can be added to training; NSP says what it
needs (two files, held-out text in two of them)."""

from __future__ import annotations

import pytest

from tformer.data.synthetic import english_number, number_split
from tformer.training.datasets import _pairs
from tformer.training.objectives import build_data
from tformer.training.recipe import load_recipe

from .conftest import write_text


def test_small_numbers_join_training_without_leaking_held_out_ones() -> None:
    base = {"model": {"preset": "transformer-tiny"}, "train": {"objective": "seq2seq"},
            "data": {"corpus": "numbers", "train_pairs": 500, "valid_pairs": 10, "test_pairs": 10, "max_length": 64}}
    plain, _, test = _pairs(load_recipe(base))
    with_small, _, _ = _pairs(load_recipe(base, ["--data.small_numbers=1000"]))
    assert with_small[:500] == plain
    added = with_small[500:]
    english = {english_number(n): n for n in range(1000)}
    assert added and all(english[s] < 1000 and number_split(english[s]) == "train" for s, _ in added)
    assert len({s for s, _ in with_small}) == len(with_small)  # no pair twice
    assert not {s for s, _ in test} & {s for s, _ in with_small}
    assert ("three hundred twenty-one", "dreihunderteinundzwanzig") in with_small or number_split(321) != "train"


def test_nsp_on_one_text_file_says_it_needs_two_files(make_recipe, tmp_path) -> None:
    (tmp_path / "only").mkdir()
    write_text(tmp_path / "only" / "book.txt", 60, seed=0, paragraph=4)  # blank lines inside: still one document
    recipe = make_recipe("mlm_nsp", f"--data.text=[{tmp_path / 'only' / '*.txt'}]")
    with pytest.raises(ValueError, match=r"reads each data.text file as one document .* needs 2 or more files, "
                                         r"got 1 .*split the text into several files"):
        build_data(recipe, tmp_path / "run", log=lambda _: None)


def test_nsp_with_no_held_out_text_in_two_files_says_raise_val_fraction(make_recipe, tmp_path) -> None:
    recipe = make_recipe("mlm_nsp", "--data.val_fraction=0.0")
    with pytest.raises(ValueError, match="data.val_fraction=0.0 leaves too little held-out text"):
        build_data(recipe, tmp_path / "run", log=lambda _: None)
