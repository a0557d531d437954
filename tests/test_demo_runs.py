"""`tformer demo` twice in a row (as `make demo` is run): the default folder's previous demo run is replaced."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_demo_with_model_family_rnn_runs_rnnsearch_through_the_same_job(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--model.family=rnn", *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tformer demo: RNNsearch (bidirectional GRU + additive attention, 2014) learns")
    run = tmp_path / "runs" / "demo-rnn"
    assert "name: rnn-demo-numbers" in (run / "recipe.yaml").read_text()
    assert json.loads((run / "final" / "config.json").read_text())["tformer_config"]["family"] == "rnn"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["steps"] == 2 and summary["test_pairs"] == 8 and len(summary["examples"]) == 3
    assert all(len(example["n_best"]) == 4 for example in summary["examples"])  # the 4-best beam lists
    assert "exact match" in out and "4-best beam search" in out
    page = (run / "attention.html").read_text()
    assert "cross-attention" in page and "encoder self-attention" not in page
    assert Path(summary["pictures"]["attention_page"]).resolve() == (run / "attention.html").resolve()
    assert not (tmp_path / "runs" / "demo").exists()  # the Transformer demo's folder is left alone


def test_demo_with_a_family_it_has_no_demo_for_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--model.family=gpt", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err == ("tformer demo: error: --model.family=gpt has no demo; use --model.family=encoder-decoder or "
                   "--model.family=rnn\n")
    assert not (tmp_path / "runs").exists()
