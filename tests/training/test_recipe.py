"""Recipes: typed options, overrides, one-line errors, every shipped recipe loads."""

from __future__ import annotations

import pytest
import yaml

from tformer.training.options import OptionError, parse_override, to_yaml
from tformer.training.recipe import RECIPES_DIR, TOKENIZER_KINDS, Recipe, load_recipe, model_config, recipe_notes


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


@pytest.mark.parametrize(("override", "field"), [
    ("--model.attention_pattern=LMLML", "attention_pattern"),
    ("--model.n_layers=5", "n_layers"),
    ("--model.lm_weight=0", "lm_weight"),  # also a task option, but under model it means the config's
    ("--train.dropout=0", "dropout"),
])
def test_a_model_config_field_outside_model_config_names_model_config(override: str, field: str) -> None:
    with pytest.raises(OptionError) as caught:
        load_recipe("gpt-shakespeare-char", [override])
    key = override[2:].split("=")[0]
    assert str(caught.value) == (f"unknown recipe key '{key}'; {field} is a ModelConfig field: write "
                                 f"--model.config.{field}=VALUE (in a YAML file, under model: config:)")
    recipe = load_recipe("gpt-shakespeare-char", ["--model.config.n_layers=5",
                                                  "--model.config.attention_pattern=LMLML"])
    assert recipe.model.config["attention_pattern"] == "LMLML"  # where the hint points, the recipe loads


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


@pytest.mark.parametrize(("override", "message"), [
    ("--train.lr=.inf", "train.lr=inf must be a finite number above 0"),
    ("--train.lr=nan", "train.lr=nan must be a finite number above 0"),
    ("--train.lr=-1e-3", "train.lr=-0.001 must be a finite number above 0"),
    ("--train.min_lr=-1e-5", "train.min_lr=-1e-05 must be a finite number >= 0"),
    ("--train.min_lr=1e-2", "train.min_lr=0.01 is above train.lr=0.001"),
    ("--train.weight_decay=.nan", "train.weight_decay=nan must be a finite number >= 0"),
    ("--train.betas=[0.9,1.5]", "train.betas[1]=1.5 must be in [0, 1)"),
    ("--train.eps=0", "train.eps=0.0 must be a finite number above 0"),
    ("--train.clip_grad_norm=.inf", "train.clip_grad_norm=inf must be a finite number above 0, or null"),
    ("--train.threads=0", "train.threads=0 must be at least 1 (or null for torch's default)"),
    ("--train.warmup_steps=-5", "train.warmup_steps=-5 must be at least 0"),
    ("--train.seed=-1", "train.seed=-1 must be in [0, 2**32)"),
    ("--eval.every=-1", "eval.every=-1 must be at least 0 (0 evaluates only at the end)"),
    ("--eval.batches=0", "eval.batches=0 must be at least 1 (or null for the whole validation set)"),
    ("--eval.num_beams=0", "eval.num_beams=0 must be at least 1"),
    ("--eval.max_new_tokens=0", "eval.max_new_tokens=0 must be at least 1"),
    ("--eval.length_penalty=.inf", "eval.length_penalty=inf must be a finite number"),
    ("--out.keep_checkpoints=0", "out.keep_checkpoints=0 must be at least 1 (--resume needs one)"),
    ("--out.checkpoint_every=-100", "out.checkpoint_every=-100 must be at least 0"),
    ("--out.log_every=0", "out.log_every=0 must be at least 1"),
    ("--out.dir=", "out.dir is empty"),
    ("--data.vocab_size=0", "data.vocab_size=0 must be at least 1"),
    ("--data.mlm_probability=0", "data.mlm_probability=0.0 must be in (0, 1]"),
    ("--data.random_next_probability=1.5", "data.random_next_probability=1.5 must be in [0, 1]"),
    ("--data.tokenizer=sentencepiece", "data.tokenizer='sentencepiece' is neither a kind"),
    ("--data.max_tokens=0", "data.max_tokens=0 must be at least 1"),
    ("--data.small_numbers=-1", "data.small_numbers=-1 must be at least 0"),
])
def test_values_that_were_silently_accepted_are_refused_in_one_line(override: str, message: str) -> None:
    with pytest.raises(OptionError) as caught:
        load_recipe("gpt-shakespeare-char", [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("recipe", "overrides", "message"), [
    ("gpt-shakespeare-char", ["--model.config.n_heads=5"], "d_model=128 is not divisible by n_heads=5"),
    ("gpt-shakespeare-char", ["--model.preset=bert-base"], "train.objective=causal_lm trains a gpt model but "
                                                           "model.preset=bert-base is bert"),
    ("transformer-multi30k", ["--model.preset=gpt2"], "train.objective=seq2seq trains an encoder-decoder or rnn model"),
    ("gpt-shakespeare-char", ["--data.block_size=128"], "data.block_size=128 is longer than the model's position "
                                                        "table (max_positions=64)"),
    ("bert-gutenberg-mlm-nsp", ["--data.text=[one.txt]"], "needs 2 or more files, got 'one.txt'"),
    ("gpt-shakespeare-char", ["--data.text=[]"], "data.text is empty"),
    ("bert-gutenberg-mlm-nsp", ["--data.max_length=4"], "data.max_length=4 leaves no room for a token in [CLS] A "
                                                        "[SEP] B [SEP]; use at least 5"),
    ("gpt-shakespeare-char", ["--data.corpus=numbers"], "data.corpus=numbers gives translation pairs"),
    ("transformer-multi30k", ["--data.valid_target=null"], "train.objective=seq2seq needs data.valid_target"),
    ("transformer-multi30k", ["--data.test_target=null"], "data.test_source is set but data.test_target is not"),
    ("gpt-shakespeare-char", ["--eval.bleu=true"], "eval.bleu=true scores translations"),
    ("gpt-shakespeare-char", ["--data.tokenizer=bpe", "--data.vocab_size=200"], "needs at least 257"),
])
def test_recipe_values_that_need_no_data_are_checked_when_the_recipe_loads(recipe: str, overrides: list[str],
                                                                           message: str) -> None:
    with pytest.raises(OptionError) as caught:
        load_recipe(recipe, overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_warmup_longer_than_the_run_is_said_not_refused() -> None:
    recipe = load_recipe("demo-numbers", ["--train.max_steps=20"])  # the demo's warmup is 100 steps
    (note,) = recipe_notes(recipe)
    assert note.startswith("train.warmup_steps=100 is more than train.max_steps=20: the learning rate climbs to 0.0004")
    assert recipe_notes(load_recipe("demo-numbers")) == []


def test_recipe_tokenizer_kinds_are_the_tokenizers_kinds() -> None:
    from tformer.tokenization import KINDS

    assert TOKENIZER_KINDS == KINDS


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_checkpoints_at_every_evaluation_within_reasonable_disk(path) -> None:
    import torch

    from tformer.models import build_model

    recipe = load_recipe(path)
    every, ckpt = recipe.eval.every, recipe.out.checkpoint_every
    assert ckpt > 0 and every > 0 and ckpt <= every, (every, ckpt)  # a Ctrl-C loses at most one evaluation's steps
    config = model_config(recipe, vocab_size=recipe.data.vocab_size or 256)
    with torch.device("meta"):
        parameters = build_model(config).num_parameters()
    # each checkpoint: fp32 weights + AdamW's two moments; at most keep_checkpoints of them stay on disk
    kept_bytes = recipe.out.keep_checkpoints * parameters * 4 * 3
    assert 1 <= recipe.out.keep_checkpoints <= 3 and kept_bytes < 1 << 30, (recipe.out.keep_checkpoints, kept_bytes)


def test_a_key_in_the_wrong_section_names_its_section() -> None:
    with pytest.raises(OptionError, match=r"unknown recipe key 'train.keep_checkpoints'; keep_checkpoints is an option "
                                          r"of out: write --out.keep_checkpoints=VALUE"):
        load_recipe("gpt-shakespeare-char", ["--train.keep_checkpoints=0"])
    with pytest.raises(OptionError, match="lr is an option of train"):
        load_recipe({"out": {"lr": 1e-3}})
