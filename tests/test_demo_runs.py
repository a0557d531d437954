"""`tformer demo` twice in a row (as `make demo` is run): the default folder's previous demo run is replaced."""

from __future__ import annotations

import json

import pytest

from tformer.cli import main

SMALL = ["--train.max_steps=2", "--data.train_pairs=300", "--data.test_pairs=8", "--data.valid_pairs=8",
         "--train.threads=1", "--out.progress=none", "--eval.every=0", "--out.log_every=1"]


def test_the_demo_replaces_its_own_previous_run_in_runs_demo(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *SMALL]) == 0
    assert "replacing" not in capsys.readouterr().out
    (tmp_path / "runs" / "demo" / "notes.txt").write_text("mine")
    assert main(["demo", *SMALL[1:], "--train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "tformer demo: replacing the previous demo run in runs/demo" in out
    rows = [json.loads(line) for line in (tmp_path / "runs/demo/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3]  # the second run's rows only
    assert json.loads((tmp_path / "runs/demo/metrics.json").read_text())["steps"] == 3
    assert (tmp_path / "runs/demo/notes.txt").read_text() == "mine"


def test_an_explicit_demo_folder_holding_a_run_is_refused(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "d", *SMALL]) == 0
    before = (tmp_path / "d" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["demo", "--out", "d", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out.dir=d already holds a run" in err and "--resume" in err
    assert (tmp_path / "d" / "metrics.jsonl").read_text() == before
    assert main(["demo", "--out", "d", "--overwrite", *SMALL[1:], "--train.max_steps=1"]) == 0
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["steps"] == 1


@pytest.mark.parametrize("other", ["recipe.yaml", "checkpoints/step-00000001/trainer.pt"])
def test_the_default_folder_holding_another_run_is_not_replaced(tmp_path, monkeypatch, capsys, other) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "runs" / "demo" / other
    path.parent.mkdir(parents=True)
    path.write_text("name: gpt-shakespeare-char\n")
    assert main(["demo", *SMALL]) == 2
    assert "out.dir=runs/demo already holds a run" in capsys.readouterr().err
    assert path.read_text() == "name: gpt-shakespeare-char\n"
