"""`tformer evaluate-lm`: the report, --json, run folders, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import tformer
from tformer import ModelConfig, Tokenizer
from tformer.cli import main

from .weights import randomize

TEXT = "the quick brown fox jumps over the lazy dog. " * 6


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = Tokenizer.train(iter([TEXT]), kind="char", special_tokens=[])
    folder = tmp_path_factory.mktemp("gpt")
    config = ModelConfig.preset("gpt2-tiny", vocab_size=len(tok), bos_token_id=None, eos_token_id=None)
    tformer.save_pretrained(randomize(tformer.build_model(config), seed=0), folder)
    tok.save(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = Tokenizer.train(iter([TEXT]), kind="wordpiece", vocab_size=60)
    folder = tmp_path_factory.mktemp("bert")
    tformer.save_pretrained(tformer.build_model(ModelConfig.preset("bert-tiny", vocab_size=len(tok))), folder)
    tok.save(folder)
    return folder


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["evaluate-lm", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_is_one_line_with_every_figure(gpt_dir: Path, text_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, gpt_dir, text_file, "--max-length", 16, "--stride", 8, "--json")
    assert code == 0 and len(out.splitlines()) == 1
    shown = json.loads(out)
    expected = tformer.evaluate_lm(gpt_dir, text=TEXT, max_length=16, stride=8)
    assert shown["tokens"] == expected.tokens == len(TEXT) - 1
    assert (shown["bytes"], shown["chars"]) == (len(TEXT) - 1, len(TEXT) - 1)  # the first is context only
    assert (shown["text_bytes"], shown["text_chars"]) == (len(TEXT), len(TEXT))
    assert shown["loss"] == pytest.approx(expected.loss)
    assert shown["perplexity"] == pytest.approx(math.exp(expected.loss))
    assert shown["bits_per_byte"] == pytest.approx(expected.nll / math.log(2) / (len(TEXT) - 1))
    assert shown["bits_per_char"] == shown["bits_per_byte"]  # ASCII: a byte per character
    assert shown["tokens_per_s"] > 0 and (shown["max_length"], shown["stride"]) == (16, 8)


def test_report_names_the_figures_and_a_run_folder_means_its_final_model(
        gpt_dir: Path, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(gpt_dir, run / "final")
    code, out, _ = _run(capsys, run, text_file, "--max-length", 16)
    assert code == 0
    figures, scored = out.splitlines()
    loss = tformer.evaluate_lm(gpt_dir, text=TEXT, max_length=16).loss
    assert figures.startswith(f"loss {loss:.4f} nats/token  perplexity {math.exp(loss):.4g}  bits/byte ")
    assert scored.startswith(f"{len(TEXT) - 1:,} tokens scored (") and "stride 8" in scored  # default: half


def test_mlm_reports_the_pseudo_perplexity(bert_dir: Path, text_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, bert_dir, text_file, "--mlm", "--json", "--batch-size", 7)
    assert code == 0
    shown = json.loads(out)
    tokens = len(Tokenizer.from_file(bert_dir).encode(TEXT, add_special_tokens=False))
    assert shown["mlm"] is True and shown["tokens"] == tokens and shown["stride"] is None
    assert shown["loss"] == pytest.approx(tformer.evaluate_lm(bert_dir, text=TEXT, mlm=True, batch_size=1).loss)


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("make_args, fragment", [
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "empty.txt", "")], "empty.txt is empty"),
    (lambda gpt, bert, tmp: [gpt, tmp / "missing.txt"], "missing.txt does not exist"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", TEXT), "--max-length", "8", "--stride", "9"],
     "--stride=9 is more than --max-length=8"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", TEXT), "--stride", "0"], "--stride=0 must be at least 1"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", TEXT), "--stride", "65"], "--stride=65 is more than"),
    (lambda gpt, bert, tmp: [bert, _write(tmp, "t.txt", TEXT)], "holds a bert model"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", TEXT), "--mlm"], "leave out --mlm"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", TEXT), "--max-length", "65"], "at most 64"),
    (lambda gpt, bert, tmp: [gpt, _write(tmp, "t.txt", "t")], "at least 2 tokens"),
    (lambda gpt, bert, tmp: [gpt, tmp], "is a folder, not a text file"),
], ids=["empty file", "missing file", "stride > max-length", "stride 0", "stride > positions", "bert without --mlm",
        "--mlm on gpt", "max-length > positions", "one token", "folder"])
def test_mistakes_are_one_line_errors(make_args, fragment: str, gpt_dir: Path, bert_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *make_args(gpt_dir, bert_dir, tmp_path))
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("tformer evaluate-lm: error: ") and fragment in err, err


def test_the_text_and_the_flags_are_checked_before_the_model_folder(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    not_a_model = tmp_path / "nothing-here"  # read first, this would be the error
    for argv, fragment in (([not_a_model, tmp_path / "missing.txt"], "missing.txt does not exist"),
                           ([not_a_model, _write(tmp_path, "t.txt", TEXT), "--stride", "0"], "--stride=0")):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and fragment in err, err
