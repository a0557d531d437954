"""Masked LM: 15 % of the ordinary tokens chosen, 80/10/10 of those, specials and padding never touched."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tformer.data.mlm import MLMCollator, mask_tokens, pad_ids

VOCAB, PAD, CLS, SEP, MASK = 30_522, 0, 101, 102, 103  # bert-base-uncased's layout
SPECIALS = (PAD, CLS, SEP, MASK, 100)


def bert_like_batch(rows: int = 320, length: int = 512, seed: int = 0) -> torch.Tensor:
    """[CLS] words [SEP] words [SEP] [PAD]...: ordinary ids from 1000 up, a random number of pads per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, VOCAB, (rows, length), generator=g)
    ids[:, 0] = CLS
    ids[:, length // 2] = SEP
    lengths = torch.randint(length // 2 + 2, length + 1, (rows,), generator=g)
    ids[torch.arange(rows), lengths - 1] = SEP
    ids[torch.arange(length) >= lengths[:, None]] = PAD
    return ids


def test_rates_over_100k_tokens() -> None:
    ids = bert_like_batch()
    ordinary = ~torch.isin(ids, torch.tensor(SPECIALS))
    assert ordinary.sum() > 100_000
    masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS,
                                 pad_token_id=PAD, generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    share = chosen.sum().item() / ordinary.sum().item()
    assert abs(share - 0.15) < 0.005, share
    n = chosen.sum().item()
    as_mask = (masked[chosen] == MASK).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    as_random = 1 - as_mask - unchanged  # a random draw equal to the original (p = 1/30k) counts as unchanged
    assert abs(as_mask - 0.8) < 0.01 and abs(as_random - 0.1) < 0.01 and abs(unchanged - 0.1) < 0.01, (
        as_mask, as_random, unchanged)


def test_specials_and_padding_are_never_chosen_and_labels_are_exact() -> None:
    ids = bert_like_batch(rows=64, length=256, seed=3)
    masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS,
                                 pad_token_id=PAD, mlm_probability=0.5)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    chosen = labels != -100
    assert not (chosen & special).any()
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original ids ...
    assert (labels[~chosen] == -100).all()  # ... and -100 everywhere else
    assert torch.equal(masked[~chosen], ids[~chosen])  # the input is untouched where nothing is predicted
    replaced = chosen & (masked != ids) & (masked != MASK)
    assert replaced.sum() > 100
    assert not torch.isin(masked[replaced], torch.tensor(SPECIALS)).any()  # random ids are never special


def test_input_tensor_is_not_modified_and_seeded_generator_is_reproducible() -> None:
    ids = bert_like_batch(rows=8, length=64)
    before = ids.clone()
    a = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, generator=torch.Generator().manual_seed(4))
    b = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, generator=torch.Generator().manual_seed(4))
    assert torch.equal(ids, before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_special_tokens_mask_protects_positions_whatever_their_id() -> None:
    ids = torch.full((4, 1000), 5000)
    protect = torch.zeros_like(ids, dtype=torch.bool)
    protect[:, ::2] = True
    _, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_tokens_mask=protect,
                            mlm_probability=1.0)
    assert ((labels != -100) == ~protect).all()


def test_configurable_split() -> None:
    ids = torch.randint(1000, VOCAB, (50, 1000), generator=torch.Generator().manual_seed(0))
    masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=1.0,
                                 mask_fraction=0.0, random_fraction=1.0)
    assert (labels != -100).all() and not (masked == MASK).any()
    assert (masked != ids).float().mean() > 0.99
    masked, _ = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=1.0, mask_fraction=1.0,
                            random_fraction=0.0)
    assert (masked == MASK).all()


def test_random_replacements_cover_the_vocabulary_except_specials() -> None:
    ids = torch.full((20, 100), 9)
    masked, _ = mask_tokens(ids, mask_token_id=1, vocab_size=10, special_ids=(0, 2, 3), mlm_probability=1.0,
                            mask_fraction=0.0, random_fraction=1.0, generator=torch.Generator().manual_seed(0))
    assert set(masked.unique().tolist()) == {4, 5, 6, 7, 8, 9}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mlm_probability": 1.5}, "mlm_probability=1.5 is outside"),
    ({"mask_fraction": -0.1}, "mask_fraction=-0.1 is outside"),
    ({"mask_fraction": 0.8, "random_fraction": 0.3}, r"0.8 \+ 0.3 > 1"),
])
def test_rates_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_tokens(torch.ones(1, 4, dtype=torch.long), mask_token_id=MASK, vocab_size=VOCAB, **kwargs)
    with pytest.raises(ValueError, match=message):
        MLMCollator(pad_token_id=PAD, mask_token_id=MASK, vocab_size=VOCAB, **kwargs)


def test_mask_id_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="mask_token_id=200"):
        mask_tokens(torch.ones(1, 4, dtype=torch.long), mask_token_id=200, vocab_size=100)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 49), min_size=1, max_size=20), min_size=1, max_size=6), st.integers(0, 99))
def test_collator_pads_and_masks_any_batch(examples: list[list[int]], seed: int) -> None:
    collate = MLMCollator(pad_token_id=0, mask_token_id=1, vocab_size=50, special_ids=(2, 3), seed=seed,
                          mlm_probability=0.5)
    batch = collate(examples)
    longest = max(map(len, examples))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.shape == (len(examples), longest) and t.dtype == torch.long for t in batch.values())
    padded, mask = pad_ids(examples, 0)
    assert batch["attention_mask"].tolist() == [[1] * len(e) + [0] * (longest - len(e)) for e in examples]
    assert torch.equal(mask, batch["attention_mask"])
    chosen = batch["labels"] != -100
    assert not (chosen & (mask == 0)).any()
    assert not (chosen & torch.isin(padded, torch.tensor([0, 1, 2, 3]))).any()
    assert torch.equal(batch["labels"][chosen], padded[chosen])
    assert torch.equal(batch["input_ids"][~chosen], padded[~chosen])


def test_collator_seed_makes_masks_reproducible() -> None:
    examples = [list(range(10, 60)), list(range(20, 40))]
    make = lambda: MLMCollator(pad_token_id=0, mask_token_id=1, vocab_size=100, seed=7)  # noqa: E731
    first, second = make(), make()
    a1, a2 = first(examples), first(examples)
    b1 = second(examples)
    assert torch.equal(a1["input_ids"], b1["input_ids"]) and torch.equal(a1["labels"], b1["labels"])
    assert not torch.equal(a1["labels"], a2["labels"])  # the generator advances between batches
