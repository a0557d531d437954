"""benchmarks/long_context_loss.py: run folders scored by position at their own windows, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tformer
from tformer.config import ModelConfig
from tformer.models import build_model
from tformer.training.position_loss import position_losses


def _run(folder: Path, window: int, pattern: str | None = None) -> Path:
    torch.manual_seed(0)
    extra = dict(attention_pattern=pattern, local_block_size=4, compression=3) if pattern else {}
    model = build_model(ModelConfig(family="gpt", vocab_size=50, d_model=16, n_heads=2, n_layers=5,
                                    max_positions=window, **extra))
    tformer.save_pretrained(model, folder / "final")
    (folder / "data").mkdir()
    np.random.default_rng(0).integers(0, 50, size=700).astype(np.uint16).tofile(folder / "data" / "val.bin")
    (folder / "data" / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
    return folder


def test_runs_are_scored_at_their_own_windows_side_by_side(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from long_context_loss import main

    short, long = _run(tmp_path / "full-16", 16), _run(tmp_path / "lmlml-64", 64, "LMLML")
    assert main([str(short), str(long), "--max-windows", "3", "--json", str(tmp_path / "f.json")]) == 0
    text = capsys.readouterr().out
    assert "| positions | full-16 | lmlml-64 |" in text and "| window x windows scored | 16 x 3 | 64 x 3 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0-64 |"))
    assert row.split("|")[2].strip() == ""  # the 16-token model never sees 64 positions back
    tokens = torch.from_numpy(np.fromfile(long / "data" / "val.bin", dtype=np.uint16).astype(np.int64))
    expected = position_losses(tformer.from_pretrained(long / "final"), tokens, 64, max_windows=3)
    assert float(row.split("|")[3]) == pytest.approx(expected.mean, abs=1e-4)
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures[str(long)]["window"] == 64 and figures[str(short)]["windows"] == 3


def test_a_folder_that_is_not_a_finished_run_is_a_one_line_error(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from long_context_loss import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and "has no final/ model" in err


def test_the_curve_bins_positions_log_spaced_and_the_plot_is_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from long_context_loss import log_bins, main

    assert log_bins(16) == [0, 1, 2, 4, 8, 16] and log_bins(12) == [0, 1, 2, 4, 8, 12] and log_bins(1) == [0, 1]
    run = _run(tmp_path / "full-16", 16)
    assert main([str(run), "--max-windows", "2", "--json", str(tmp_path / "f.json"),
                 "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    bins = json.loads((tmp_path / "f.json").read_text())[str(run)]["curve"]
    tokens = torch.from_numpy(np.fromfile(run / "data" / "val.bin", dtype=np.uint16).astype(np.int64))
    per_position = position_losses(tformer.from_pretrained(run / "final"), tokens, 16, max_windows=2).per_position
    assert [(a, b) for a, b, _ in bins] == [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16)]
    assert bins[3][2] == pytest.approx(per_position[4:8].mean().item(), abs=1e-5)


@pytest.mark.parametrize("name", ["plot.txt", "no-such-folder/plot.png"])
def test_a_plot_path_it_cannot_write_is_refused_before_scoring(tmp_path: Path, capsys, name: str) -> None:  # noqa: ANN001
    from long_context_loss import main

    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "not-scored"), "--plot", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and "give a .png or .svg" in err
