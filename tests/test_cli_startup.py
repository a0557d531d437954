"""`tformer --help`, `--version` and each command's `--help` start without importing torch (so they take well under
a second), and `tformer models` says how to see the tiny presets. Imports are checked, not time (timing is flaky)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tformer
from tformer.cli import main
from tformer.tokenization import KINDS

SRC = Path(tformer.__file__).resolve().parents[1]  # the tformer under test
HEAVY = ("torch", "transformers", "numpy", "scipy", "seqeval", "tokenizers", "matplotlib")


def _imported(*argv: str) -> tuple[set[str], str]:
    """The modules `python -X importtime -m tformer.cli ARGV` imported (top-level names), and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tformer.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "tformer" in modules  # the parse worked: the package itself is listed
    return modules, done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["finetune", "--help"], ["evaluate", "--help"],
                                  ["train", "--help"], ["generate", "--help"], ["viz", "positions", "--help"],
                                  ["prepare", "--help"], ["explain", "attention", "--help"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    modules, _ = _imported(*argv)
    assert not modules & set(HEAVY), f"tformer {' '.join(argv)} imported {sorted(modules & set(HEAVY))}"


def test_version_prints_the_package_version() -> None:
    _, out = _imported("--version")
    assert out.strip() == f"tformer {tformer.__version__}"


def test_the_cli_lists_the_tokenizer_kinds_of_tokenization() -> None:
    from tformer.cli.prepare import TOKENIZER_KINDS

    assert TOKENIZER_KINDS == KINDS  # written twice so that --help need not import torch


def test_the_package_still_exports_every_public_name() -> None:
    for name in tformer.__all__:
        assert getattr(tformer, name) is not None
    assert tformer.Tokenizer is tformer.tokenization.Tokenizer and callable(tformer.from_pretrained)
    assert tformer.layers.attention.attention_steps  # submodules as before, when `import tformer` loaded them all
    with pytest.raises(AttributeError):
        _ = tformer.no_such_name


def test_models_says_that_all_shows_the_tiny_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "tformer models --all" in last and "7 smaller presets" in last
    assert main(["models", "--all"]) == 0
    shown = capsys.readouterr().out
    assert "gpt2-tiny" in shown and "--all" not in shown
