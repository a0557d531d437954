"""`tformer finetune` and `tformer evaluate` as a user types them: the result lines, the files, and one-line errors
with a non-zero exit for the mistakes a user makes."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tformer
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
    (["finetune", "sst2", "--model", "{root}/missing", "--data", "{data}"], "missing' does not exist"),
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


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _finetune(folders: dict[str, Path], out: Path | str, *extra: str, task: str = "sst2",
              model: Path | None = None) -> int:
    return main(["finetune", task, "--model", str(model or folders["bert"]), "--data", str(folders["data"]),
                 "--out", str(out), "--max_steps=1", "--batch_size=8", "--max_eval_examples=4", *extra])


@pytest.mark.parametrize("where", ["model", "inside"])
def test_finetune_refuses_to_write_into_the_model_folder(folders, tmp_path, capsys, where):
    model = tmp_path / "bert"
    write_model(model, "bert")
    before = _files(model)
    out = model if where == "model" else model / "sst2"
    assert _finetune(folders, out, model=model) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"--out {out} is " in error and "would overwrite the pre-trained weights" in error
    assert _files(model) == before


def test_finetune_refuses_an_out_folder_holding_what_it_did_not_write(folders, tmp_path, capsys):
    other = tmp_path / "gpt"
    write_model(other, "gpt")  # another model
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("mine")
    for out, shown in ((other, "holds a model that tformer finetune did not write"), (notes, "thesis.txt")):
        before = _files(out)
        for extra in ([], ["--overwrite"]):  # --overwrite replaces only a previous fine-tune
            assert _finetune(folders, out, *extra) == 2
            error = capsys.readouterr().err.strip()
            assert "\n" not in error and shown in error and "pick a new --out" in error
            assert _files(out) == before


def test_a_previous_finetune_is_replaced_only_with_overwrite(folders, tmp_path, capsys):
    out = tmp_path / "sst2"
    assert _finetune(folders, out) == 0
    first = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert _finetune(folders, out, "--seed=7") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"--out {out} already holds a fine-tune (" in error and "metrics.json" in error
    assert error.endswith("pick a new --out, continue it with --resume, or pass --overwrite to replace it")
    assert json.loads((out / "metrics.json").read_text()) == first
    assert _finetune(folders, out, "--seed=7", "--overwrite") == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["options"]["seed"] == 7 and "--overwrite" in second["command"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["split"] for row in rows] == ["train", "eval"]  # the old run's rows are gone, not appended to


def test_options_take_the_space_form_and_the_errors_speak_finetunes_syntax(folders, tmp_path, capsys):
    out = tmp_path / "space"
    assert _finetune(folders, out, "--lr", "1e-3", "--group_by_length") == 0
    options = json.loads((out / "metrics.json").read_text())["options"]
    assert options["lr"] == pytest.approx(1e-3) and options["group_by_length"] is True
    capsys.readouterr()
    for extra, message in ((["--lrr", "1e-3"], "unknown option 'lrr'; did you mean 'lr'?"),
                           (["stray"], "unrecognised argument 'stray'; finetune options are written --key=value or "
                                       "--key value")):
        assert _finetune(folders, tmp_path / "bad", *extra) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and message in error and "--section.key" not in error
        assert not (tmp_path / "bad").exists()


def test_a_char_level_gpt_on_sst2_is_one_line_and_writes_nothing(folders, tmp_path, capsys):
    import torch

    from tformer.config import ModelConfig

    model = tmp_path / "char-gpt"
    tokenizer = tformer.Tokenizer.train(iter(["the film was great and "]), kind="char")  # no [UNK], few letters
    torch.manual_seed(0)
    config = ModelConfig.preset("gpt1-tiny", vocab_size=tokenizer.vocab_size)
    tformer.save_pretrained(tformer.build_model(config), model, tokenizer=tokenizer)
    out = tmp_path / "out"
    assert _finetune(folders, out, model=model) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "(char-level, without [UNK]) cannot encode" in error and "sst2 train" in error
    assert "byte-level bpe, or word / wordpiece" in error and "WordLevel error" not in error
    assert not out.exists()


def test_a_dev_split_that_cannot_be_encoded_is_found_before_training(folders, tmp_path, capsys):
    data = tmp_path / "data"
    write_data(data)
    squad = data / "squad-v1.1" / "dev-v1.1.json"
    record = json.loads(squad.read_text())
    question = record["data"][-1]["paragraphs"][0]["qas"][0]  # the last article is in dev
    question["question"] = "where does anna live ? " * 6  # 30 tokens: no room in a 64-token window
    squad.write_text(json.dumps(record))
    out = tmp_path / "squad"
    assert main(["finetune", "squad", "--model", str(folders["bert"]), "--data", str(data), "--out", str(out),
                 "--max_steps=1"]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("tformer finetune: error: squad dev cannot be encoded") and "question 'q47'" in error
    assert "fine-tuning " not in captured.err and not out.exists()  # before training, nothing written


def test_evaluate_scores_the_whole_dev_split_and_says_how_many(folders, tmp_path, capsys):
    out = tmp_path / "sub"
    assert _finetune(folders, out) == 0  # fine-tuned with --max_eval_examples=4
    capsys.readouterr()
    assert main(["evaluate", "sst2", "--model", str(out), "--data", str(folders["data"])]) == 0
    assert capsys.readouterr().out.strip().endswith("(all 24 dev examples)")
    assert main(["evaluate", "sst2", "--model", str(out), "--data", str(folders["data"]), "--max_eval_examples", "4",
                 "--batch_size", "3", "--threads", "1"]) == 0
    shown = capsys.readouterr().out.strip()
    record = json.loads((out / "metrics.json").read_text())
    assert shown == (f"sst2 dev: accuracy {record['metrics']['accuracy']:.4f}  (the first 4 of 24 dev examples "
                     "(--max_eval_examples))")
    assert main(["evaluate", "sst2", "--model", str(out), "--data", str(folders["data"]), "--batch_size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tformer evaluate: error: batch_size=0 must be at least 1"


def test_finetune_help_lists_every_option_the_readme_shows(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Fine-tune\n", 1)[1].split("\n## ", 1)[0]
    shown = set(re.findall(r"(?<![\w-])--([a-z][a-z_]+)", section))
    assert {"init", "group_by_length", "lr", "max_train_examples", "overwrite"} <= shown  # the parse found them
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    help_text = capsys.readouterr().out
    missing = sorted(name for name in shown if f"--{name}" not in help_text)
    assert not missing, f"the README shows these finetune options that --help does not list: {missing}"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_and_keeps_the_weights_so_far(folders, tmp_path, signal_number):
    """A real `tformer finetune` process: after its first progress line it gets SIGINT (Ctrl-C) or SIGTERM, finishes
    the step, writes a checkpoint in OUT/checkpoints (a model folder that loads), prints one line naming it and
    exits with 130; OUT/ holds no final model or metrics.json."""
    out = tmp_path / "stopped"
    env = {**os.environ, "PYTHONPATH": str(Path(tformer.__file__).resolve().parents[1])}  # the tformer under test
    process = subprocess.Popen(
        [sys.executable, "-m", "tformer.cli", "finetune", "sst2", "--model", str(folders["bert"]), "--data",
         str(folders["data"]), "--out", str(out), "--epochs=100000", "--batch_size=8", "--log_every=1",
         "--threads=1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("step 1:"):
                break
        process.send_signal(signal_number)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    err = "".join(lines) + rest
    last = err.strip().splitlines()[-1]
    assert process.returncode == 130 and "Traceback" not in err
    assert last.startswith("tformer finetune: interrupted at step ") and last.endswith("continue with --resume")
    step = int(last.split(" at step ")[1].split(":")[0])
    assert step >= 1
    checkpoint = Path(last.split("checkpoint at ")[1].split(",")[0])
    assert checkpoint.parent == out / "checkpoints" and checkpoint.name == f"step-{step:08d}"
    model = tformer.from_pretrained(checkpoint)
    assert model.config.task == "sequence-classification" and (checkpoint / "tokenizer.json").is_file()
    assert not (out / "config.json").exists() and not (out / "metrics.json").exists()
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*"))


def test_evaluate_shows_a_progress_bar_on_a_terminal(folders, finetuned, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["evaluate", "sst2", "--model", str(finetuned), "--data", str(folders["data"]),
                 "--batch_size", "4"]) == 0
    assert "scoring sst2" in terminal.getvalue() and "0/6 [" in terminal.getvalue()
