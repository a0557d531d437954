"""The td-long-lm recipes: the T-DMCA at 4,096 and its full-attention baselines differ only in attention and window."""

from __future__ import annotations

import torch

from tformer.models import build_model
from tformer.training.recipe import RECIPES_DIR, load_recipe, model_config

VARIANTS = sorted(p.stem for p in RECIPES_DIR.glob("td-long-lm-full-*.yaml"))
LONG = ("attention_pattern", "local_block_size", "local_look_back", "compression", "max_positions")


def test_the_t_dmca_recipe_is_lmlml_over_the_books_in_windows_of_4096() -> None:
    recipe = load_recipe("td-long-lm")
    config = model_config(recipe, vocab_size=recipe.data.vocab_size)
    assert config.attention_pattern == "LMLML" and config.n_layers == 5 and config.compression == 3
    assert config.local_block_size == 256 and recipe.data.block_size == config.max_positions == 4096
    assert recipe.data.text == ["gutenberg/*.txt.gz"] and recipe.train.objective == "causal_lm"
    with torch.device("meta"):
        model = build_model(config)
    assert model.new_cache().__class__.__name__ == "PatternKVCache"


def test_the_baselines_are_the_same_run_with_full_attention_and_the_same_tokens_per_step() -> None:
    assert "td-long-lm-full-512" in VARIANTS and len(VARIANTS) >= 2
    base = load_recipe("td-long-lm")
    tokens = base.data.block_size * base.data.batch_size
    for name in VARIANTS:
        variant = load_recipe(name)
        config = model_config(variant, vocab_size=8192)
        assert config.attention_pattern is None and variant.data.block_size == config.max_positions
        assert name == f"td-long-lm-full-{variant.data.block_size}"
        assert variant.data.block_size * variant.data.batch_size == tokens, name
        same = {k: v for k, v in variant.model.config.items() if k not in LONG}
        assert same == {k: v for k, v in base.model.config.items() if k not in LONG}, name
        for section in ("train", "eval", "out"):
            assert getattr(variant, section) == getattr(base, section), (name, section)
        assert {k: v for k, v in vars(variant.data).items() if k not in ("block_size", "batch_size")} == {
            k: v for k, v in vars(base.data).items() if k not in ("block_size", "batch_size")}
