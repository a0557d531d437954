"""Recipes: typed options, overrides, one-line errors, every shipped recipe loads."""

from __future__ import annotations

import pytest
import yaml

from tformer.training.options import OptionError, parse_override, to_yaml
from tformer.training.recipe import RECIPES_DIR, Recipe, load_recipe, model_config


def test_every_shipped_recipe_loads_and_round_trips_through_print_config() -> None:
    paths = sorted(RECIPES_DIR.glob("*.yaml"))
    assert paths, "recipes/ is empty"
    for path in paths:
        recipe = load_recipe(path)
        again = load_recipe(yaml.safe_load(to_yaml(recipe)))
        assert again == recipe, path.name


def test_overrides_are_typed_and_nested() -> None:
    recipe = load_recipe("gpt-shakespeare-char", ["--train.lr=2e-3", "--train.compile=true",
                                                   "--model.config.n_layers=2", "--data.text=[a.txt,b.txt]",
                                                   "--train.betas=[0.9,0.95]", "--train.clip_grad_norm=null"])
    assert recipe.train.lr == 2e-3 and recipe.train.compile is True
    assert recipe.model.config["n_layers"] == 2 and recipe.data.text == ["a.txt", "b.txt"]
    assert recipe.train.betas == (0.9, 0.95) and recipe.train.clip_grad_norm is None
    assert isinstance(load_recipe("gpt-shakespeare-char", ["--train.lr=1"]).train.lr, float)


@pytest.mark.parametrize(("override", "message"), [
    ("--train.lrr=1e-3", "unknown recipe key 'train.lrr'; did you mean 'train.lr'?"),
    ("--trian.lr=1e-3", "unknown recipe key 'trian'; did you mean 'train'?"),
    ("--train.lr=fast", "train.lr='fast' must be a number"),
    ("--train.max_steps=1.5", "train.max_steps=1.5 must be an integer"),
    ("--train.compile=maybe", "train.compile='maybe' must be true or false"),
    ("--train.precision=fp8", "train.precision='fp8' is not one of: fp32, bf16, fp16"),
    ("--model.config.n_layer=3", "unknown recipe key 'model.config.n_layer'; did you mean 'model.config.n_layers'?"),
    ("--model.preset=gpt5", "model.preset='gpt5' is unknown"),
    ("--train.max_steps=0", "train.max_steps=0 must be at least 1"),
    ("--train.lr", "has no value"),
])
def test_bad_keys_and_values_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(OptionError) as caught:
        load_recipe("gpt-shakespeare-char", [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_recipe_names_the_shipped_ones(tmp_path) -> None:
    with pytest.raises(OptionError, match="shipped: .*gpt-shakespeare-char"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(OptionError, match="not valid YAML at line"):
        load_recipe(bad)


def test_override_values_read_as_yaml_scalars() -> None:
    assert parse_override("--a.b=3") == (["a", "b"], 3)
    assert parse_override("--a=3e-4") == (["a"], "3e-4")  # YAML 1.1; the float field converts it
    assert parse_override("--a.b=hello world") == (["a", "b"], "hello world")


def test_model_config_takes_vocab_and_ids_from_the_data() -> None:
    recipe = load_recipe("gpt-shakespeare-char")
    config = model_config(recipe, vocab_size=65)
    assert config.vocab_size == 65 and config.bos_token_id is None and config.eos_token_id is None
    assert (config.d_model, config.n_layers, config.n_heads, config.max_positions) == (128, 4, 4, 64)
    assert config.bias is False and config.dropout == 0.0


def test_print_config_lists_every_option_with_help() -> None:
    text = to_yaml(Recipe())
    assert "lr: 0.0003  # peak learning rate" in text
    assert "schedule: cosine  #" in text and "objective: causal_lm  #" in text
