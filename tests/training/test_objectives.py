"""Objectives: each loss falls on a batch it can overfit; batches reach the model as specified."""

from __future__ import annotations

import pytest
import torch

from tformer.losses import IGNORE_INDEX
from tformer.training import Trainer
from tformer.training.objectives import build_objective


@pytest.mark.parametrize("objective", ["causal_lm", "mlm", "mlm_nsp", "seq2seq", "decoder_seq2seq"])
def test_loss_falls_on_a_batch_it_can_overfit(make_recipe, objective: str) -> None:
    recipe = make_recipe(objective, "--model.config.dropout=0.0", "--model.config.attention_dropout=0.0")
    trainer = Trainer(recipe)
    batch = trainer.data.train.next_batch()
    objective_ = build_objective(recipe)
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss, _ = objective_.loss(trainer.model, batch, objective_.counts(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0], (objective, losses[0], losses[-1])


def test_causal_lm_labels_are_the_next_tokens(make_recipe) -> None:
    batch = Trainer(make_recipe("causal_lm")).data.train.next_batch()
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 16)
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])


def test_mlm_and_nsp_batches_reach_the_model_as_specified(make_recipe, monkeypatch) -> None:
    trainer = Trainer(make_recipe("mlm_nsp"))
    tok = trainer.data.tokenizer
    batch = trainer.data.train.next_batch()
    ids, labels, types, mask = batch["input_ids"], batch["labels"], batch["token_type_ids"], batch["attention_mask"]
    assert batch["next_sentence_label"].shape == (4,) and set(batch["next_sentence_label"].tolist()) <= {0, 1}
    for row in range(ids.shape[0]):
        length = int(mask[row].sum())
        row_ids = ids[row, :length].tolist()
        assert row_ids[0] == tok.cls_token_id and row_ids[-1] == tok.sep_token_id
        seps = [i for i, t in enumerate(row_ids) if t == tok.sep_token_id]
        assert len(seps) == 2  # [CLS] A [SEP] B [SEP]; special tokens are never masked
        assert types[row, :seps[0] + 1].eq(0).all() and types[row, seps[0] + 1:length].eq(1).all()
        assert labels[row, length:].eq(IGNORE_INDEX).all()  # padding is never a target
    chosen = labels != IGNORE_INDEX
    assert chosen.any()
    # where a label is set, the input holds [MASK], a random token or the original; elsewhere the original
    assert not (ids[chosen] == tok.pad_token_id).any()
    seen = {}
    real_forward = trainer.model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs, input_ids=args[0])
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", spy)
    trainer.objective.loss(trainer.model, batch, trainer.objective.counts(batch))
    assert torch.equal(seen["input_ids"], ids) and torch.equal(seen["token_type_ids"], types)
    assert torch.equal(seen["attention_mask"], mask)


def test_mlm_masks_fifteen_percent_80_10_10(make_recipe) -> None:
    trainer = Trainer(make_recipe("mlm", "--data.batch_size=64"))
    tok = trainer.data.tokenizer
    chosen = masked = unchanged = total = 0
    for _ in range(30):
        batch = trainer.data.train.next_batch()
        candidates = (batch["attention_mask"] == 1) & (batch["input_ids"] != tok.cls_token_id) & \
            (batch["input_ids"] != tok.sep_token_id)
        picked = batch["labels"] != IGNORE_INDEX
        total += int(candidates.sum())
        chosen += int(picked.sum())
        shown, wanted = batch["input_ids"][picked], batch["labels"][picked]
        masked += int((shown == tok.mask_token_id).sum())
        unchanged += int((shown == wanted).sum())
    random_ = chosen - masked - unchanged  # neither [MASK] nor the original: a random token
    assert chosen > 3000  # the rates below then have a standard deviation of ~0.005: 0.02 is 4 of them
    assert abs(chosen / total - 0.15) < 0.02
    assert abs(masked / chosen - 0.8) < 0.03
    # a random draw equals the original with probability ~1/90 here (0.001 of the chosen): unchanged absorbs it
    assert abs(random_ / chosen - 0.1) < 0.02
    assert abs(unchanged / chosen - 0.1) < 0.02


def test_decoder_seq2seq_loss_covers_the_target_only(make_recipe) -> None:
    trainer = Trainer(make_recipe("decoder_seq2seq"))
    tok = trainer.data.tokenizer
    batch = trainer.data.train.next_batch()
    sep, eos = tok.token_to_id("[SEP]"), tok.token_to_id("[EOS]")
    for row, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        where = row.index(sep)
        assert all(label == IGNORE_INDEX for label in labels[:where])  # nothing to learn on the source
        target = [t for t in labels[where:] if t != IGNORE_INDEX]
        assert target == row[where + 1:where + 1 + len(target)] and target[-1] == eos
        assert tok.decode(target) and tok.decode(row[:where])


def test_seq2seq_labels_are_the_shifted_decoder_inputs(make_recipe) -> None:
    trainer = Trainer(make_recipe("seq2seq"))
    batch = trainer.data.train.next_batch()
    start = trainer.model.config.decoder_start_token_id
    assert batch["decoder_input_ids"][:, 0].eq(start).all()
    known = batch["decoder_attention_mask"][:, 1:] == 1  # the input after a row's last label is padding
    assert torch.equal(batch["decoder_input_ids"][:, 1:][known], batch["labels"][:, :-1][known])


def test_gradient_accumulation_gives_the_big_batch_gradient(make_recipe) -> None:
    """grad_accum=2 over two micro-batches == one step on both joined: the loss is averaged over all tokens."""
    small = Trainer(make_recipe("seq2seq", "--train.grad_accum=2", "--model.config.dropout=0.0",
                                "--model.config.attention_dropout=0.0", "--train.clip_grad_norm=null"))
    big = Trainer(make_recipe("seq2seq", "--model.config.dropout=0.0", "--model.config.attention_dropout=0.0",
                              "--train.clip_grad_norm=null"))
    big.model.load_state_dict(small.model.state_dict())
    first, second = small.data.train.next_batch(), small.data.train.next_batch()
    small.data.train.load_state_dict({"epoch": 0, "position": 0})
    stats = small.train_step()
    width = max(first["labels"].shape[1], second["labels"].shape[1])
    source = max(first["input_ids"].shape[1], second["input_ids"].shape[1])

    def pad(t, n, value):
        return torch.nn.functional.pad(t, (0, n - t.shape[1]), value=value)

    joined = {}
    for key in first:
        n = source if key in ("input_ids", "attention_mask") else width
        value = IGNORE_INDEX if key == "labels" else 0
        joined[key] = torch.cat([pad(first[key], n, value), pad(second[key], n, value)])
    big.data.train.next_batch = lambda: joined
    big_stats = big.train_step()
    assert stats["tokens"] == big_stats["tokens"]
    assert stats["loss_sum"] == pytest.approx(big_stats["loss_sum"], rel=1e-5)
    for (name, a), b in zip(small.model.state_dict().items(), big.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
