"""The `tformer` command line: listing presets, the interim demo, one-line errors."""

from __future__ import annotations

import pytest

from tformer.cli import main


def test_models_lists_published_presets_with_exact_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gpt2 " in out and "124,439,808" in out and "63,082,496" in out and "bert-large" in out
    assert "gpt2-tiny" not in out


def test_demo_runs_a_forward_pass_and_prints_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--presets", "gpt2-tiny", "bert-tiny", "transformer-tiny", "--length", "8"]) == 0
    out = capsys.readouterr().out
    assert "gpt2-tiny: GPT, 22,368 parameters" in out
    assert "logits               (2, 8, 99)" in out
    assert "nsp_logits           (2, 2)" in out
    assert "cross_attentions[0]  (2, 4, 4, 8)" in out


def test_errors_are_one_line_and_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--presets", "gpt2-tiny", "--length", "100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sequence length 100 is longer than the position table" in err
