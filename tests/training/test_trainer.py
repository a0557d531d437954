"""The Trainer end to end: logs, outputs, NaN stop, translation scores, the `tformer train` command."""

from __future__ import annotations

import json

import pytest
import torch

from tformer.cli import main
from tformer.training import Trainer, TrainingDiverged
from tformer.training.checkpoint import latest_checkpoint

from ..dev_dependency import import_dev


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_recipe, monkeypatch) -> None:
    trainer = Trainer(make_recipe("causal_lm", "--out.checkpoint_every=2"))
    real_loss, calls = trainer.objective.loss, {"n": 0}

    def poisoned(model, batch, totals):
        calls["n"] += 1
        loss, sums = real_loss(model, batch, totals)
        if calls["n"] == 4:
            return loss * float("nan"), {**sums, "loss_sum": sums["loss_sum"] * float("nan")}
        return loss, sums

    monkeypatch.setattr(trainer.objective, "loss", poisoned)
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "the loss is nan at step 4" in message and "step-00000002" in message and "--resume" in message
    assert "\n" not in message
    good = latest_checkpoint(trainer.run_dir)
    assert good is not None and good.name == "step-00000002"
    assert trainer.step == 3  # the poisoned step never reached the optimizer
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_fit_logs_jsonl_tensorboard_and_the_loss_curve(make_recipe) -> None:
    import_dev("matplotlib")
    import_dev("tensorboard")
    recipe = make_recipe("causal_lm", "--out.tensorboard=true", "--out.plot=true", "--eval.every=3",
                         "--out.log_every=2")
    result = Trainer(recipe).fit()
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert all({"loss", "ppl", "lr", "tok/s"} <= set(r) for r in train)
    assert [r["step"] for r in rows if r["split"] == "eval"] == [3, 6]
    assert (result.run_dir / "loss.png").stat().st_size > 1000
    assert any((result.run_dir / "tensorboard").iterdir())
    assert (result.run_dir / "recipe.yaml").is_file()


def test_translation_runs_score_bleu_and_exact_match(make_recipe) -> None:
    result = Trainer(make_recipe("seq2seq", "--eval.bleu=true", "--eval.bleu_pairs=8", "--eval.max_new_tokens=8",
                                 "--train.max_steps=2")).fit()
    for key in ("bleu", "exact_match", "test_bleu", "test_exact_match", "loss", "ppl"):
        assert key in result.eval_metrics, key
    assert 0 <= result.eval_metrics["bleu"] <= 100 and 0 <= result.eval_metrics["test_exact_match"] <= 1


def test_a_preset_of_the_wrong_family_is_a_clear_error(make_recipe) -> None:
    with pytest.raises(ValueError, match="trains a bert model but model.preset=gpt2-tiny is gpt"):
        Trainer(make_recipe("mlm_nsp", "--model.preset=gpt2-tiny"))
    with pytest.raises(ValueError, match="data.block_size=100 is longer than the model's position table"):
        Trainer(make_recipe("causal_lm", "--data.block_size=100"))


def test_tformer_train_runs_a_recipe_and_resumes(make_recipe, tmp_path, capsys) -> None:
    recipe_file = tmp_path / "tiny.yaml"
    recipe = make_recipe("causal_lm", "--out.checkpoint_every=2")
    from tformer.training.options import to_yaml

    recipe_file.write_text(to_yaml(recipe))
    assert main(["train", str(recipe_file), "--train.max_steps=4"]) == 0
    out = capsys.readouterr().out
    assert "done: 4 steps" in out and "model folder:" in out
    assert main(["train", str(recipe_file), "--train.max_steps=6", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resuming from" in captured.out + captured.err and "done: 6 steps" in captured.out
    assert main(["train", str(recipe_file), "--print-config", "--train.lr=0.5"]) == 0
    assert "lr: 0.5  # peak learning rate" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["train", "gpt-shakespeare-char", "--train.lrr=1"], "did you mean 'train.lr'?"),
    (["train", "gpt-shakespeare-char", "--model.attention_pattern=LMLML"],
     "attention_pattern is a ModelConfig field: write --model.config.attention_pattern=VALUE"),
    (["train", "gpt-shakespeare-char", "--data.batch_size=many"], "data.batch_size='many' must be an integer"),
    (["train", "gpt-shakespeare-char", "stray"], "unrecognised argument 'stray'"),
    (["train", "no-such-recipe"], "is neither a file nor a shipped recipe"),
    (["train", "gpt-shakespeare-char", "--data.root=/nonexistent", "--out.dir=/tmp/tformer-never"],
     "does not exist; set data.root"),
])
def test_tformer_train_errors_are_one_line(args, message, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_bf16_autocast_follows_fp32_on_cpu(make_recipe) -> None:
    curves = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(make_recipe("causal_lm", f"--train.precision={precision}", "--train.max_steps=20",
                                      "--train.lr=1e-2", run=precision))
        curves[precision] = [(s := trainer.train_step())["loss_sum"] / s["tokens"] for _ in range(20)]
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
    assert curves["bf16"][-1] < 0.85 * curves["bf16"][0]
    assert max(abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"], strict=True)) < 0.05


def test_fp16_needs_cuda(make_recipe) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device; on CPU use train.precision=bf16"):
        Trainer(make_recipe("causal_lm", "--train.precision=fp16"))


def test_data_text_takes_globs(make_recipe, tmp_path) -> None:
    trainer = Trainer(make_recipe("causal_lm", f"--data.text=[{tmp_path}/book*.txt]", "--data.val_fraction=0.2"))
    meta = json.loads((trainer.run_dir / "data" / "meta.json").read_text())
    assert meta["inputs"] == [str(tmp_path / f"book{i}.txt") for i in range(3)]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        Trainer(make_recipe("causal_lm", f"--data.text=[{tmp_path}/nothing*.txt]", run="other"))


def test_a_translation_run_folder_translates_from_the_command_line(make_recipe, capsys) -> None:
    """`tformer translate --model RUN/final` encodes the source as training did (ending with [EOS])."""
    result = Trainer(make_recipe("seq2seq", "--train.max_steps=2")).fit()
    tokenizer = __import__("tformer").Tokenizer.from_file(result.model_dir / "tokenizer.json")
    ids = tokenizer.encode("forty-two")
    assert ids[-1] == tokenizer.token_to_id("[EOS]")
    assert tokenizer.encode("forty-two", add_special_tokens=False) == ids[:-1]
    assert main(["translate", "--model", str(result.model_dir), "forty-two", "--max-new-tokens", "4"]) == 0


def test_without_held_out_text_the_run_says_it_evaluates_on_training_text(make_recipe, capsys) -> None:
    trainer = Trainer(make_recipe("causal_lm", "--data.val_fraction=0.0"))
    assert "evaluating on train.bin (raise data.val_fraction" in capsys.readouterr().out
    assert trainer.data.eval_batches and trainer.fit().eval_metrics["loss"] > 0
