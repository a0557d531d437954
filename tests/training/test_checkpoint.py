"""Checkpoints: exact resume, atomic writes, keeping the last few, a checkpoint is a model folder."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.training import Trainer
from tformer.training.checkpoint import latest_checkpoint, list_checkpoints

from .conftest import state_of


@pytest.mark.parametrize("objective", ["causal_lm", "mlm_nsp", "seq2seq"])
def test_n_steps_resume_n_steps_equals_2n_steps_bit_for_bit(make_recipe, objective: str) -> None:
    flags = ("--train.max_steps=6", "--model.config.dropout=0.1", "--eval.every=2")  # dropout: RNG state matters
    straight = Trainer(make_recipe(objective, *flags, run="straight"))
    straight.fit()
    if objective != "causal_lm":  # the same vocabulary for both runs (training one twice may order ids differently)
        flags += (f"--data.tokenizer={straight.run_dir / 'data' / 'tokenizer.json'}",)

    first = Trainer(make_recipe(objective, *flags, run="split"))
    for _ in range(3):
        first.train_step()
    first.save()
    del first
    second = Trainer(make_recipe(objective, *flags, run="split"), resume=True)
    result = second.fit()
    assert result.step == 6
    for (name, a), b in zip(state_of(straight.model).items(), state_of(second.model).values(), strict=True):
        assert torch.equal(a, b), f"{objective}: {name} differs after resume"
    for (a_group, b_group) in zip(straight.optimizer.state.values(), second.optimizer.state.values(), strict=True):
        assert torch.equal(a_group["exp_avg_sq"], b_group["exp_avg_sq"])


def test_a_kill_during_the_write_leaves_the_previous_checkpoint(make_recipe) -> None:
    trainer = Trainer(make_recipe("causal_lm"))
    trainer.train_step()
    good = trainer.save()
    trainer.train_step()

    def killed(tmp):
        assert (tmp / "model.safetensors").is_file() and (tmp / "trainer.pt").is_file()
        raise KeyboardInterrupt("killed between write and rename")

    with pytest.raises(KeyboardInterrupt):
        trainer.save(before_rename=killed)
    assert latest_checkpoint(trainer.run_dir) == good
    model = tformer.from_pretrained(good)  # still a loadable model folder
    assert model.config.vocab_size == trainer.model.config.vocab_size
    again = Trainer(make_recipe("causal_lm"), resume=True)
    assert again.resume() == good and again.step == 1
    # the next save replaces the half-written folder
    again.train_step()
    assert again.save().name == "step-00000002"


def test_keeps_the_last_checkpoints_and_writes_a_model_folder(make_recipe) -> None:
    trainer = Trainer(make_recipe("causal_lm", "--out.checkpoint_every=1", "--out.keep_checkpoints=2"))
    result = trainer.fit()
    kept = list_checkpoints(trainer.run_dir)
    assert [p.name for p in kept] == ["step-00000005", "step-00000006"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "trainer.pt", "rng-rank0.pt"):
        assert (kept[-1] / name).is_file(), name
    loaded = tformer.from_pretrained(result.model_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, trainer.model.eval()(ids).logits, atol=1e-6)
    assert tformer.Tokenizer.from_file(result.model_dir / "tokenizer.json").vocab_size == loaded.config.vocab_size


def test_resume_without_a_checkpoint_starts_fresh(make_recipe) -> None:
    trainer = Trainer(make_recipe("causal_lm", "--train.max_steps=2"))
    assert trainer.fit(resume=True).step == 2
