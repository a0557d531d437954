"""benchmarks/long_attention.py: a point's memory is torch's real allocations, a point past its budget is stopped and
the longer lengths are not run, the report's longest fits and ratios, one-line option errors, a --quick run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import BENCHMARKS

REPO = BENCHMARKS.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _spec(kind: str, mode: str, length: int, budget: float = 1e9) -> dict:
    from long_attention import point_spec
    from long_attention_options import parse_args

    args = parse_args(["--quick", "--threads", "1", "--out", str(Path(os.environ.get("TMPDIR", "/tmp")) / "la")])
    return {**point_spec(args, kind, mode, length), "budget_bytes": int(budget)}


def _point(spec: dict) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "long_attention_point.py"), json.dumps(spec)],
                          capture_output=True, text=True, env=ENV, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1].removeprefix("RESULT "))


def test_a_point_sees_torchs_allocations_the_explicit_weights_at_least() -> None:
    explicit = _point(_spec("full-explicit", "train", 512))
    fused = _point(_spec("full", "train", 512))
    weights = 2 * 512 * 512 * 4  # one layer's (heads, N, N) float32 attention weights, kept for the backward
    assert explicit["status"] == fused["status"] == "ok" and explicit["resettable_peak"]
    assert explicit["peak_bytes"] >= 5 * weights > fused["peak_bytes"] > 0, (explicit, fused)
    assert explicit["step_s"] > 0 and len(explicit["times_s"]) == 1
    decode = _point(_spec("full", "decode", 512))
    cache = 5 * 2 * 512 * 32 * 4  # 5 layers of keys and values, (1, 2 heads, 512, 16) float32
    assert decode["status"] == "ok" and decode["decode_peak_bytes"] >= decode["cache_bytes"] >= cache * 0.9, decode


def test_a_point_past_its_budget_is_stopped_and_longer_lengths_are_not_run(tmp_path: Path) -> None:
    from long_attention import run_points
    from long_attention_options import parse_args
    from long_attention_report import longest_fits

    args = parse_args(["--quick", "--kinds", "full-explicit", "--modes", "train", "--lengths", "512,1024",
                       "--budget-gb", "0.002", "--threads", "1", "--out", str(tmp_path)])
    points = run_points(args, log=lambda line: None)
    assert [(p["length"], p["status"], p.get("skipped", False)) for p in points] == [
        (512, "over budget", False), (1024, "over budget", True)]
    assert points[0]["seen_bytes"] > 2e6
    assert longest_fits(points, "full-explicit", "train", [512, 1024]) == "none (from 512: over budget)"


def _ok(kind: str, length: int, peak: float, mode: str = "train") -> dict:
    return {"mode": mode, "kind": kind, "length": length, "status": "ok", "peak_bytes": peak, "step_s": 1.0}


def test_the_report_names_the_longest_fit_and_the_memory_ratio() -> None:
    from long_attention_report import longest_fits, memory_ratios

    points = [_ok("full", 1024, 4e6), _ok("full", 2048, 16e6),
              {"mode": "train", "kind": "full", "length": 4096, "status": "over budget"},
              {"mode": "train", "kind": "full", "length": 8192, "status": "over budget", "skipped": True},
              _ok("lmlml", 1024, 2e6), _ok("lmlml", 2048, 4e6), _ok("lmlml", 4096, 8e6), _ok("lmlml", 8192, 16e6)]
    lengths = [1024, 2048, 4096, 8192]
    assert longest_fits(points, "full", "train", lengths) == "2,048 (4,096: over budget)"
    assert longest_fits(points, "lmlml", "train", lengths) == "8,192 (every length tried)"
    assert longest_fits(points, "lmlml", "decode", lengths) == "not run"
    ratios = memory_ratios(points, lengths)
    assert len(ratios) == 2 and "full / lmlml = 2.00" in ratios[0] and "full / lmlml = 4.00" in ratios[1]


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from long_attention_options import parse_args

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for argv, expected in ((["--kinds", "full,sparse"], "--kinds: unknown value 'sparse'"),
                           (["--modes", "infer"], "--modes: unknown value 'infer'"),
                           (["--lengths", "512,x"], "--lengths='512,x' must be comma-separated integers"),
                           (["--lengths", "4"], "needs lengths of at least 8 tokens"),
                           (["--budget-gb", "0"], "--budget-gb=0.0 must be above 0"),
                           (["--repeats", "0"], "--repeats=0 must be at least 1"),
                           (["--d-model", "30", "--n-heads", "4"], "--d-model=30 is not divisible by --n-heads=4"),
                           (["--out", str(foreign)], "holds files this benchmark did not write")):
        with pytest.raises(SystemExit) as stopped:
            parse_args([*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert (foreign / "notes.txt").read_text() == "mine"


def test_quick_run_writes_the_tables_the_plot_and_its_marker(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "long_attention.py"), "--quick", "--lengths", "64",
                           "--kinds", "full,lmlml", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    for heading in ("### Training step", "### Prefill", "### Decoding", "### Longest length within the 1 GB budget"):
        assert heading in text
    assert "Machine: " in text and "5 layers, d_model 32" in text
    points = json.loads((out / "results.json").read_text())["points"]
    assert {(p["mode"], p["kind"], p["status"]) for p in points} == {
        (m, k, "ok") for m in ("train", "decode") for k in ("full", "lmlml")}
    assert all(p.get("peak_bytes", p.get("decode_peak_bytes", 0)) > 0 for p in points)
    assert (out / "long_attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / ".written-by-long_attention").is_file()
    assert (out / "results.md").read_text().strip() == text.strip()
