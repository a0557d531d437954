"""The objective registry: one entry per train.objective, the Trainer never names one, an unknown name is one line."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

import tformer.training.trainer as trainer_module
from tformer.cli import main
from tformer.training import Trainer, load_recipe
from tformer.training.objectives import NAMES, REGISTRY, objective_class
from tformer.training.objectives.base import Objective
from tformer.training.objectives.causal_lm import CausalLM
from tformer.training.options import OptionError, to_yaml


def test_every_name_maps_to_its_own_entry() -> None:
    for name in NAMES:
        entry = objective_class(name)
        assert issubclass(entry, Objective) and entry.name == name
        assert entry.length_field in ("block_size", "max_length")
    assert NAMES == ("causal_lm", "mlm", "mlm_nsp", "seq2seq", "decoder_seq2seq", "task")


def test_the_trainer_names_no_objective() -> None:
    """No identifier and no string literal of trainer.py is an objective's name (prose in docstrings may be)."""
    source = Path(trainer_module.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    strings = {node.value.strip() for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    named = [name for name in NAMES if name in names or name in strings]
    assert not named, f"trainer.py names the objectives {named}"
    assert "objective ==" not in source and "objective in (" not in source


def test_an_unknown_objective_is_one_line_listing_the_known_ones(make_recipe, tmp_path, capsys) -> None:
    with pytest.raises(OptionError, match=r"^train.objective='causal' is unknown; known objectives: causal_lm, mlm, "
                                          r"mlm_nsp, seq2seq, decoder_seq2seq, task$"):
        make_recipe("causal_lm", "--train.objective=causal")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(to_yaml(make_recipe("causal_lm")))
    capsys.readouterr()
    assert main(["train", str(recipe), "--train.objective=bert"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known objectives: causal_lm, mlm" in err


class EveryOtherToken(CausalLM):
    """A new objective for the test: next-token prediction scored on every other position only."""

    name = "every_other_token"

    def loss(self, model, batch, totals):  # noqa: ANN001, ANN201 - the base signature
        labels = batch["labels"].clone()
        labels[:, 1::2] = -100
        return super().loss(model, {**batch, "labels": labels}, totals)

    def counts(self, batch):  # noqa: ANN001, ANN201
        return {"tokens": (batch["labels"][:, ::2] != -100).sum()}


def test_a_new_objective_is_one_class_and_one_registry_line(make_recipe, monkeypatch) -> None:
    monkeypatch.setitem(REGISTRY, "every_other_token", f"{__name__}:EveryOtherToken")
    monkeypatch.setattr("tformer.training.objectives.NAMES", (*NAMES, "every_other_token"))
    monkeypatch.setattr("tformer.training.recipe.OBJECTIVES", (*NAMES, "every_other_token"))
    recipe = make_recipe("causal_lm", "--train.objective=every_other_token", "--train.max_steps=3")
    trainer = Trainer(recipe, log_stream=io.StringIO())
    result = trainer.fit()
    trainer.close()
    assert isinstance(trainer.objective, EveryOtherToken) and result.step == 3
    assert (result.model_dir / "config.json").is_file() and load_recipe(result.run_dir / "recipe.yaml")
