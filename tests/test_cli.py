"""The `tformer` command line: listing presets, the demo, one-line errors."""

from __future__ import annotations

import json

import pytest

from tformer.cli import main


def test_models_lists_published_presets_with_exact_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gpt2 " in out and "124,439,808" in out and "63,082,496" in out and "bert-large" in out
    assert "gpt2-tiny" not in out


def test_demo_trains_evaluates_and_shows_n_best_lists(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shortened demo (the real one trains for minutes): it prints the scores and writes its files."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--train.max_steps=20", "--data.train_pairs=2000",
                 "--data.test_pairs=40", "--data.valid_pairs=20", "--train.threads=1", "--out.progress=none",
                 "--eval.every=0"]) == 0
    printed = capsys.readouterr().out
    assert "held-out test numbers: 40" in printed and "exact match" in printed and "BLEU" in printed
    assert "seven hundred fifty-six thousand six hundred sixty-one  (test split)" in printed
    assert printed.count("4. ") >= 3  # three 4-best lists
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 20 and 0.0 <= summary["test_exact_match"] <= 1.0
    assert len(summary["examples"]) == 3 and all(len(e["n_best"]) == 4 for e in summary["examples"])
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizer.json").is_file()
    assert (out / "loss.png").is_file() and (out / "metrics.jsonl").is_file()
    assert (out / "alignment.png").stat().st_size > 0 and "cross-attention" in (out / "attention.html").read_text()
    assert summary["pictures"] == {"attention_page": str(out / "attention.html"),
                                   "alignment": str(out / "alignment.png")}
    assert f"what the model attends to on 'two hundred fifty-nine': {out / 'attention.html'}" in printed


def test_errors_are_one_line_and_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--train.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'train.max_steps'?" in err
    with pytest.raises(SystemExit):
        main(["models", "--train.max_steps=3"])  # only train and demo take recipe options
