"""Checkpoints: exact resume, atomic writes, keeping the last few, a checkpoint is a model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tformer
from tformer.training import Trainer
from tformer.training.checkpoint import latest_checkpoint, list_checkpoints, restore_rng, rng_state
from tformer.training.distributed import Distributed

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


def on_fp16(trainer: Trainer) -> Trainer:
    """The Trainer's fp16 path on CPU: float16 autocast and a gradient scaler (the recipe allows fp16 only with
    CUDA, so they are set here); growth_interval=1 doubles the scale after every finite step, so it changes."""
    trainer.autocast_dtype = torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1)
    return trainer


def test_an_fp16_resume_takes_back_the_gradient_scaler(make_recipe) -> None:
    flags = ("--train.max_steps=4", "--model.config.dropout=0.1")
    straight = on_fp16(Trainer(make_recipe("causal_lm", *flags, run="straight")))
    straight.fit()
    first = on_fp16(Trainer(make_recipe("causal_lm", *flags, run="split")))
    for _ in range(2):
        first.train_step()
    first.save()
    at_step2 = first.scaler.state_dict()
    assert at_step2["scale"] > 16.0  # the scale moved, so a fresh scaler would not match it
    del first
    second = on_fp16(Trainer(make_recipe("causal_lm", *flags, run="split"), resume=True))
    second.resume()
    assert second.scaler.state_dict() == at_step2
    second.fit()
    assert second.scaler.state_dict() == straight.scaler.state_dict()
    for (name, a), b in zip(state_of(straight.model).items(), state_of(second.model).values(), strict=True):
        assert torch.equal(a, b), f"{name} differs after the fp16 resume"


def draws(generators: list[torch.Generator]) -> list[torch.Tensor]:
    return [torch.rand(4), *(torch.rand(4, generator=g) for g in generators)]


def test_rng_restore_takes_back_the_cuda_generators(tmp_path: Path, monkeypatch) -> None:
    # the CUDA branch of rng_state / set_rng_state run on CPU: two CPU generators stand in for two GPUs' generators
    gpus = [torch.Generator().manual_seed(seed) for seed in (11, 12)]

    def set_all(states: list[torch.Tensor]) -> None:
        for generator, state in zip(gpus, states, strict=True):
            generator.set_state(state)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [g.get_state() for g in gpus])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)
    torch.save(rng_state(), tmp_path / "rng-rank0.pt")  # as save_checkpoint writes it
    expected = draws(gpus)
    draws(gpus)  # the streams move on
    restore_rng(tmp_path, Distributed())
    for got, want in zip(draws(gpus), expected, strict=True):
        assert torch.equal(got, want)


def test_each_process_takes_back_its_own_rng_and_rank0s_when_the_world_grew(tmp_path: Path) -> None:
    states = {}
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        states[rank] = rng_state()
        torch.save(states[rank], tmp_path / f"rng-rank{rank}.pt")
    for rank in (0, 1, 2):  # rank 2 of 3: the checkpoint was written by 2 processes
        torch.manual_seed(7)
        restore_rng(tmp_path, Distributed(rank=rank, world_size=3))
        assert torch.equal(torch.get_rng_state(), states[0 if rank == 2 else rank]["torch"]), rank
