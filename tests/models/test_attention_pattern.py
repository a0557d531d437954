"""Per-layer attention patterns in the GPT family (the T-DMCA, Liu et al. 2018): L local, M memory-compressed,
F full. No output sees a later token, in training forwards and in cached decoding; cached equals uncached; a
pattern of all F is today's model exactly; every bad pattern field is one line naming the value and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.conftest import randomize
from tformer.config import ModelConfig
from tformer.layers.cache import DynamicKVCache
from tformer.layers.pattern_attention import CompressedSelfAttention, LocalSelfAttention
from tformer.layers.pattern_cache import PatternKVCache
from tformer.models import GPT
from tformer.training.options import OptionError
from tformer.training.recipe import load_recipe, model_config

ATOL = 1e-5
LENGTH = 23  # block 4, look_back 1: a ring of 8 wraps twice; compression 3: 7 complete groups and a partial one
PATTERNS = ("LMLML", "L", "M", "LF")


def _config(pattern: str | None, **overrides: object) -> ModelConfig:
    n_layers = len(pattern) if pattern is not None else 2
    return ModelConfig.preset("gpt2-tiny", n_layers=n_layers, attention_pattern=pattern, local_block_size=4,
                              compression=3, dropout=0.0, attention_dropout=0.0, **overrides)


def _model(pattern: str | None, **overrides: object) -> GPT:
    return randomize(GPT(_config(pattern, **overrides))).eval()


def _ids(batch: int = 2, length: int = LENGTH, seed: int = 0) -> Tensor:
    return torch.randint(3, 99, (batch, length), generator=torch.Generator().manual_seed(seed))


def _cached_logits(model: GPT, ids: Tensor, chunks: list[int], attention_mask: Tensor | None = None) -> Tensor:
    """Logits of every position, the ids fed in chunks of the given sizes through one cache."""
    cache, out, start = model.new_cache(), [], 0
    for size in chunks:
        end = start + size
        mask = attention_mask[:, :end] if attention_mask is not None else None
        out.append(model(ids[:, start:end], mask, cache=cache).logits)
        start = end
    assert start == ids.size(1)
    return torch.cat(out, dim=1)


def _changed_after(ids: Tensor, position: int) -> Tensor:
    """`ids` with every token after `position` replaced (by other tokens, never the same ones)."""
    changed = ids.clone()
    changed[:, position + 1:] = (ids[:, position + 1:] + 1 + torch.arange(ids.size(1) - position - 1)) % 96 + 3
    assert (changed[:, position + 1:] != ids[:, position + 1:]).all()
    return changed


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("implementation", ["fused", "explicit"])
def test_training_forward_never_sees_a_later_token(pattern: str, implementation: str) -> None:
    model = _model(pattern, attention=implementation)
    ids = _ids()
    with torch.no_grad():
        logits = model(ids).logits
        for position in range(LENGTH - 1):
            changed = model(_changed_after(ids, position)).logits
            torch.testing.assert_close(changed[:, :position + 1], logits[:, :position + 1], atol=ATOL, rtol=0,
                                       msg=f"pattern {pattern}: a token after {position} changed a logit at or before")
            assert not torch.allclose(changed[:, position + 1:], logits[:, position + 1:], atol=ATOL)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cached_decoding_never_sees_a_later_token_and_equals_uncached(pattern: str) -> None:
    model = _model(pattern)
    ids = _ids()
    chunks = [10, 3, 1, 1, 5, 1, 2]  # a prefill longer than the ring (8), then steps of every size
    with torch.no_grad():
        uncached = model(ids).logits
        cached = _cached_logits(model, ids, chunks)
        torch.testing.assert_close(cached, uncached, atol=ATOL, rtol=0)
        for position in (0, 4, 9, 12, 15, 21):
            changed = _cached_logits(model, _changed_after(ids, position), chunks)
            torch.testing.assert_close(changed[:, :position + 1], cached[:, :position + 1], atol=ATOL, rtol=0)


def test_cached_decoding_with_left_padding_equals_uncached() -> None:
    model = _model("LMLML")
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # row 1 left-padded: its first compressed groups and local blocks hold padding
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        uncached = model(ids, mask, position_ids).logits
        cache, out = model.new_cache(), []
        for start, end in ((0, 7), *((i, i + 1) for i in range(7, LENGTH))):
            out.append(model(ids[:, start:end], mask[:, :end], position_ids[:, start:end], cache=cache).logits)
    real = mask.bool()
    torch.testing.assert_close(torch.cat(out, dim=1)[real], uncached[real], atol=ATOL, rtol=0)


def test_each_block_gets_the_attention_its_letter_names_and_the_cache_follows() -> None:
    model = _model("LMLML")
    kinds = [type(block.self_attention) for block in model.decoder.blocks]
    assert kinds == [LocalSelfAttention, CompressedSelfAttention] * 2 + [LocalSelfAttention]
    compressed = sorted(name for name in model.state_dict() if ".compress." in name)
    assert compressed == [f"decoder.blocks.{i}.self_attention.compress.{part}.{p}"
                          for i in (1, 3) for part in ("keys", "values") for p in ("bias", "weight")]
    cache = model.new_cache()
    assert isinstance(cache, PatternKVCache)
    assert cache.kinds == ("local", "compressed", "local", "compressed", "local")
    assert cache.caches["compressed"].compressors[1] is model.decoder.blocks[1].self_attention.compress
    assert isinstance(_model(None).new_cache(), DynamicKVCache)


@pytest.mark.parametrize("pattern", ["ML", "LM", "FM"])
def test_cache_length_counts_positions_whatever_layer_zero_is(pattern: str) -> None:
    model = _model(pattern)
    cache = model.new_cache()
    ids = _ids(length=9)
    with torch.no_grad():
        model(ids[:, :5], cache=cache)
        assert cache.length == 5 and cache.key_length(2) == 7
        model(ids[:, 5:], cache=cache)  # no positions named: they continue after cache.length
    assert cache.length == 9


def test_a_pattern_of_all_full_layers_is_todays_model_exactly() -> None:
    torch.manual_seed(0)
    today = GPT(ModelConfig.preset("gpt2-tiny", n_layers=3)).eval()
    torch.manual_seed(0)
    full = GPT(ModelConfig.preset("gpt2-tiny", n_layers=3, attention_pattern="FFF")).eval()
    ours, theirs = full.state_dict(), today.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        assert torch.equal(full(ids).logits, today(ids).logits)
        assert torch.equal(full(ids, mask).logits, today(ids, mask).logits)
    assert isinstance(full.new_cache(), DynamicKVCache)


def test_a_config_without_a_pattern_serialises_as_before() -> None:
    plain = ModelConfig.preset("gpt2-tiny").to_dict()
    assert not {"attention_pattern", "local_block_size", "local_look_back", "compression"} & set(plain)
    assert ModelConfig.from_dict(plain) == ModelConfig.preset("gpt2-tiny")
    patterned = _config("LMLML", local_look_back=0)
    saved = patterned.to_dict()
    assert (saved["attention_pattern"], saved["local_block_size"], saved["local_look_back"],
            saved["compression"]) == ("LMLML", 4, 0, 3)
    assert ModelConfig.from_dict(saved) == patterned
    assert patterned.replace(attention_pattern=None).replace(attention_pattern="LMLML") == patterned


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(n_layers=5, attention_pattern="LMXML"),
     "attention_pattern='LMXML' has the letter 'X'; use L (local), M (memory-compressed) or F (full) for each layer"),
    (dict(n_layers=5, attention_pattern="lmlml"),
     "attention_pattern='lmlml' has the letter 'l'; use L (local), M (memory-compressed) or F (full) for each layer"),
    (dict(n_layers=4, attention_pattern="LMLML"),
     "attention_pattern='LMLML' has 5 letters but n_layers=4: give one letter per layer"),
    (dict(attention_pattern=""),
     "attention_pattern='' must be a string of letters L, M, F (one per layer), or None for all full"),
    (dict(local_block_size=0), "local_block_size=0 must be at least 1 (the paper uses 256)"),
    (dict(local_look_back=-1),
     "local_look_back=-1 must be 0 (own block only) or more (blocks before it too; tensor2tensor uses 1)"),
    (dict(compression=0), "compression=0 must be at least 1 (the paper uses 3)"),
])
def test_bad_pattern_fields_are_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        ModelConfig.preset("gpt2-tiny", **overrides)
    assert str(error.value) == message


@pytest.mark.parametrize("preset", ["bert-tiny", "transformer-tiny"])
def test_a_pattern_outside_the_gpt_family_is_refused(preset: str) -> None:
    with pytest.raises(ValueError) as error:
        ModelConfig.preset(preset, attention_pattern="LL")
    family = ModelConfig.preset(preset).family
    assert str(error.value) == (f"attention_pattern='LL' needs family 'gpt' (GPT and the decoder-only T-D), got "
                                f"family={family!r}; leave attention_pattern None")


def test_recipe_overrides_reach_the_pattern_fields() -> None:
    overrides = ["--model.preset=gpt2-tiny", "--model.config.n_layers=5", "--model.config.attention_pattern=LMLML",
                 "--model.config.local_block_size=128", "--model.config.local_look_back=0",
                 "--model.config.compression=3"]
    base = {"train": {"objective": "causal_lm"}, "data": {"text": ["x.txt"], "block_size": 32}}
    config = model_config(load_recipe(base, overrides), vocab_size=99)
    assert (config.attention_pattern, config.local_block_size, config.local_look_back) == ("LMLML", 128, 0)
    assert config.attention_kinds == ("local", "compressed", "local", "compressed", "local")
    with pytest.raises(OptionError, match=r"^model.config: attention_pattern='LMLMX' has the letter 'X'"):
        load_recipe(base, [*overrides[:2], "--model.config.attention_pattern=LMLMX"])


def test_a_patterned_model_refuses_a_static_cache_and_a_cache_of_other_kinds() -> None:
    model = _model("LMLML")
    with pytest.raises(ValueError) as error:
        model.new_static_cache(2, 64)
    assert str(error.value) == ("attention_pattern='LMLML' has local or compressed layers, whose caches (a ring "
                                "buffer, compressed slots) have no static form: use new_cache() (generate picks it "
                                "when cache_implementation is None or 'dynamic')")
    assert not model.supports_static_cache and _model(None).supports_static_cache
    ids = _ids()
    with pytest.raises(ValueError, match=r"^attention_pattern='LMLML' needs its own cache, a PatternKVCache .* got a "
                                         r"DynamicKVCache: pass cache=model.new_cache\(\)$"):
        model(ids, cache=DynamicKVCache(5))
    with pytest.raises(ValueError, match=r"^this model's layers are all full attention but the cache is for"):
        _model("FFFFF")(ids, cache=model.new_cache())


def test_an_uncached_compressed_layer_needs_a_sequence_as_long_as_its_kernel() -> None:
    model = _model("LM")
    with pytest.raises(ValueError, match=r"^a sequence of N=2 tokens is shorter than the compression kernel 3"):
        model(_ids(length=2))
    with torch.no_grad():
        model(_ids(length=2), cache=model.new_cache())  # the cache has the first slot for them
