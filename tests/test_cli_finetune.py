"""`tformer finetune` and `tformer evaluate` as a user types them: the result lines, the files, and one-line errors
with a non-zero exit for the mistakes a user makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tformer.cli import main

from .tasks.finetune_data import write_data, write_model


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-finetune")
    return {"data": write_data(root / "data"), "bert": write_model(root / "bert", "bert"), "root": root}


@pytest.fixture(scope="module")
def finetuned(folders: dict[str, Path]) -> Path:
    out = folders["root"] / "sst2"
    assert main(["finetune", "sst2", "--model", str(folders["bert"]), "--data", str(folders["data"]), "--out",
                 str(out), "--epochs=1", "--batch_size=16", "--max_train_examples=32"]) == 0
    return out


def test_finetune_then_evaluate_print_the_same_dev_score(folders, finetuned, capsys):
    record = json.loads((finetuned / "metrics.json").read_text())
    assert record["command"].startswith("tformer finetune sst2 --model ") and "--max_train_examples=32" in \
        record["command"]
    assert record["train_examples"] == 32 and record["subset"] is True and record["steps"] == 2
    capsys.readouterr()
    assert main(["evaluate", "sst2", "--model", str(finetuned), "--data", str(folders["data"])]) == 0
    shown = capsys.readouterr().out.strip()
    assert shown == f"sst2 dev: accuracy {record['metrics']['accuracy']:.4f}  (all 24 dev examples)"


def test_finetune_prints_the_score_and_where_the_model_went(folders, tmp_path, capsys):
    out = tmp_path / "rte"
    assert main(["finetune", "rte", "--model", str(folders["bert"]), "--data", str(folders["data"]), "--out",
                 str(out), "--max_steps=2", "--batch_size=8"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("rte dev: accuracy ") and "(64 training examples, 2 steps, " in lines[0]
    assert lines[1] == f"model folder: {out}  (tformer evaluate rte --model {out})"
    assert "fine-tuning " in captured.err and "step 2: loss " in captured.err and "examples/s" in captured.err


@pytest.mark.parametrize(("words", "message"), [
    (["finetune", "sst-22", "--model", "{bert}", "--data", "{data}"], "unknown task 'sst-22'; did you mean 'sst2'?"),
    (["finetune", "mrpc", "--model", "{bert}", "--data", "{data}"], "glue/MRPC has no train.tsv.gz"),
    (["finetune", "sst2", "--model", "{root}/missing", "--data", "{data}"], "missing' has no config.json"),
    (["finetune", "stsb", "--model", "{sst2}", "--data", "{data}"], "num_labels=2 but stsb needs 1"),
    (["evaluate", "conll2003", "--model", "{sst2}", "--data", "{data}"], "needs a token-classification head"),
    (["evaluate", "sst2", "--model", "{sst2}", "--data", "{root}"], "glue/SST-2 has no dev.tsv.gz"),
    (["finetune", "sst2", "--model", "{bert}", "--data", "{data}", "--lrr=1"], "option 'lrr'; did you mean 'lr'?"),
    (["finetune", "sst2", "--model", "{bert}", "--data", "{data}", "--epochs=zero"], "epochs='zero' must be an int"),
])
def test_mistakes_are_one_line_errors_with_a_non_zero_exit(folders, finetuned, capsys, words, message):
    values = {"bert": folders["bert"], "data": folders["data"], "root": folders["root"], "sst2": finetuned}
    capsys.readouterr()
    assert main([word.format(**values) for word in words]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert "\n" not in error and error.startswith(f"tformer {words[0]}: error: ") and message in error
    assert captured.out == ""
