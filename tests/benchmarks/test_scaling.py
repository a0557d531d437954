"""benchmarks/scaling.py: the power-law fit recovers a known law, a small sweep runs end to end and a rerun trains
nothing (an interrupted point resumes from its checkpoint), bad options and data are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.evaluation.zero_shot_models import write_zero_shot_data
from tests.training.conftest import write_text


def test_the_fit_recovers_a_known_alpha_and_irreducible_loss() -> None:
    from scaling_fit import fit_power_law, power_law

    n = np.geomspace(1e5, 1e7, 6)
    loss = power_law(n, np.log(2e4), 0.35, 2.5) + np.random.default_rng(0).normal(0, 0.003, n.size)
    fit = fit_power_law(n, loss)
    assert fit["alpha"] == pytest.approx(0.35, abs=3 * fit["alpha_se"]) and fit["alpha_se"] < 0.05, fit
    assert fit["l_inf"] == pytest.approx(2.5, abs=0.05) and not fit["at_bound"], fit
    exact = fit_power_law(n[:3], power_law(n[:3], np.log(8.8e13), 0.076, 1.7))  # Kaplan's L(N), 3 points
    assert exact["alpha"] == pytest.approx(0.076, rel=1e-3) and exact["alpha_se"] is None, exact
    with pytest.raises(ValueError, match="needs 3 or more distinct X"):
        fit_power_law([1e5, 1e6, 1e6], [3.0, 2.0, 2.0])


def _args(tmp_path: Path, *extra: str):
    from scaling_options import parse_args

    data = write_zero_shot_data(tmp_path / "data")
    (data / "books").mkdir(exist_ok=True)
    for i in range(2):
        write_text(data / "books" / f"book{i}.txt", 300, seed=i)
    return parse_args(["--quick", "--data", str(data), "--books", "books/*.txt", "--sizes", "1x16x2,1x24x2,2x32x4",
                       "--steps", "4", "--zero-shot-examples", "4", "--out", str(tmp_path / "out"),
                       "--runs", str(tmp_path / "runs"), *extra])


def test_a_small_sweep_runs_end_to_end_and_a_rerun_trains_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    import scaling
    from tformer.training import Trainer

    report = scaling.sweep(_args(tmp_path), log=lambda line: None)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"results.md", "results.json", "loss_vs_params.png",
                                                "loss_vs_compute.png"}
    points = json.loads((out / "results.json").read_text())["points"]
    assert len(points) == 9 and all(p["trained_now"] and np.isfinite(p["val_loss"]) for p in points)
    assert sorted({p["non_embedding_parameters"] for p in points}) == [3824, 8040, 26496]  # 12 L d^2 + norms, biases
    assert {p["data_tokens"] for p in points} == {200, 400, 800} and all(0 <= p["sst2"]["accuracy"] <= 1
                                                                         for p in points)
    assert set(report["fits"]["loss_vs_params"]) == {"200", "400", "800"} and "alpha" in report["fits"]["loss_vs_data"]
    assert "| L2-d32-h4 | 2 | 32 | 4 | 26,496 | 800 |" in (out / "results.md").read_text()
    one = tmp_path / "runs" / "L1-d24-h2-D400"
    final_loss = points[4]["val_loss"]
    import shutil

    shutil.rmtree(one / "final")  # as if stopped after its last checkpoint: only this point runs, resumed
    fits = []
    real_fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: fits.append(self.run_dir) or real_fit(self, **kw))
    again = scaling.sweep(_args(tmp_path), log=lambda line: None)
    assert fits == [one] and [p["trained_now"] for p in again["points"]] == [False] * 4 + [True] + [False] * 4
    assert "resuming from" in capsys.readouterr().out
    assert again["points"][4]["val_loss"] == pytest.approx(final_loss, abs=1e-6)


@pytest.mark.parametrize(("argv", "message"), [
    (["--sizes", "2x64"], "--sizes: '2x64' is not LAYERSxD_MODELxHEADS"),
    (["--sizes", "2x64x3,1x8x2,1x16x2"], "d_model divisible by the heads"),
    (["--sizes", "2x64x2,2x64x2"], "the L(N) fit needs 3 or more"),
    (["--data-tokens", "1000,2000"], "the L(D) fit needs 3 or more"),
    (["--data-tokens", "10,2000,4000"], "not one window of --block-size=32"),
    (["--steps", "0"], "--steps=0 must be at least 1"),
    (["--zero-shot-examples", "-1"], "--zero-shot-examples=-1 must be 0"),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    from scaling_options import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["--quick", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_foreign_out_folder_too_much_data_or_changed_settings_are_refused(tmp_path: Path, capsys) -> None:
    import scaling
    from scaling_options import parse_args

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not the benchmark's")
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--out", str(tmp_path / "mine"), "--runs", str(tmp_path / "runs")])
    assert "holds files this benchmark did not write" in capsys.readouterr().err
    args = _args(tmp_path)
    assert scaling.main([*_argv(args), "--data-tokens", "200,400,10000000"]) == 1
    err = capsys.readouterr().err
    assert "--data-tokens: 10,000,000 is more than the" in err and len(err.strip().splitlines()) == 1, err
    assert scaling.main([*_argv(args), "--lr", "0.01"]) == 1
    assert "holds a sweep with other settings (lr)" in capsys.readouterr().err


def _argv(args) -> list[str]:
    return ["--quick", "--data", str(args.data), "--books", "books/*.txt", "--sizes", "1x16x2,1x24x2,2x32x4",
            "--steps", "4", "--zero-shot-examples", "0", "--out", str(args.out), "--runs", str(args.runs)]


def test_a_nearly_flat_law_reports_its_x_c_as_a_log_not_an_overflow() -> None:
    from scaling_fit import fit_power_law

    fit = fit_power_law([45000, 135000, 410000], [7.0041, 7.0161, 7.0017])  # 10 steps of a 10M model: no trend
    assert fit["log_x_c"] > 709 and fit["x_c"] is None, fit  # e^709 is the largest float


def test_an_interrupted_sweep_says_in_one_line_how_to_go_on(tmp_path: Path, monkeypatch, capsys) -> None:
    import scaling
    from tformer.interrupt import Interrupted
    from tformer.training import Trainer

    def stop(self, **kw):
        raise Interrupted("interrupted at step 2: checkpoint at X, continue with --resume")

    monkeypatch.setattr(Trainer, "fit", stop)
    assert scaling.main(_argv(_args(tmp_path))) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to go on" in err and len(err.strip().splitlines()) == 1, err
