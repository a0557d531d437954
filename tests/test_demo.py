"""The project's main job: `tformer demo` reaches >= 95 % exact match on the held-out test numbers."""

from __future__ import annotations

import pytest

from tformer.demo import run_demo


@pytest.mark.slow
def test_the_full_demo_translates_held_out_numbers(tmp_path) -> None:
    """The shipped demo-numbers recipe as `make demo` runs it (minutes on a 2-core CPU)."""
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", overrides=["--out.progress=none"], say=lines.append)
    assert summary["test_pairs"] > 9000
    assert summary["test_exact_match"] >= 0.95, summary["test_exact_match"]
    assert summary["test_bleu"] >= 95.0
    best = summary["examples"][0]["n_best"]
    assert best[0][0] == "zweihundertneunundfünfzig" and best[0][1] >= best[1][1]  # 259, a held-out number
