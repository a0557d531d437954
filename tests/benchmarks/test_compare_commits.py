"""benchmarks/compare_commits.py: rounds alternate the commits, ratios pool per row, a >10 % slowdown is flagged;
and one real run of generate.py on tiny settings, a temporary worktree of HEAD against this tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import BENCHMARKS

REPO = BENCHMARKS.parent
TINY_GENERATE = ["generate", "--preset", "gpt2-tiny", "--rows", "greedy-b1", "--new-tokens", "4", "--prompt-len", "8",
                 "--repeats", "1", "--no-compile", "--bandwidth-mib", "16"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}


def test_groups_after_double_dashes_name_a_benchmark_and_its_arguments() -> None:
    import compare_commits

    own, groups = compare_commits.split_groups(["A", "B", "--rounds", "2", "--", "generate", "--rows", "greedy-b1",
                                                "--", "train", "--rows", "gpt2-fp32"])
    assert own == ["A", "B", "--rounds", "2"]
    assert groups == [("generate", ["--rows", "greedy-b1"]), ("train", ["--rows", "gpt2-fp32"])]
    with pytest.raises(SystemExit):
        compare_commits.parse_args(["A", "B", "--", "forward"])
    with pytest.raises(SystemExit):
        compare_commits.parse_args(["A", "B"])


def test_rounds_alternate_the_commits_and_a_row_over_10_percent_slower_is_flagged(tmp_path, monkeypatch) -> None:
    import compare_commits

    old = compare_commits.Tree("old", "OLD", "aaaa", tmp_path / "old")
    new = compare_commits.Tree("new", "NEW", "bbbb", tmp_path / "new")
    ratios = {("old", "greedy-b1"): 1.00, ("new", "greedy-b1"): 0.85, ("old", "beam4-b1"): 0.50,
              ("new", "beam4-b1"): 0.48}
    calls = []

    def fake_run(tree, script, args, scratch):  # noqa: ANN001, ANN202
        calls.append(tree.label)
        rows = [{"row": row, "ratios": [ratios[(tree.label, row)]], "tformer_tokens_per_s": [10.0],
                 "ratio": ratios[(tree.label, row)]} for row in ("greedy-b1", "beam4-b1")]
        return {"rows": rows, "seconds": 1.0, "tformer": str(tree.path), "table": ""}

    monkeypatch.setattr(compare_commits, "run_once", fake_run)
    runs = compare_commits.run_rounds((old, new), [("generate", [])], 3, tmp_path, tmp_path)
    assert calls == ["old", "new", "new", "old", "old", "new"] and len(runs) == 6
    rows = {row["row"]: row for row in compare_commits.comparison(old, new)}
    assert rows["generate greedy-b1"]["slower"] and rows["generate greedy-b1"]["new_over_old"] == pytest.approx(0.85)
    assert not rows["generate beam4-b1"]["slower"]  # 0.96: within the 10 %
    table = compare_commits.format_tables(old, new, list(rows.values()), 3)
    assert "| generate greedy-b1 | 1.00 [1.00–1.00] | 0.85 [0.85–0.85] | 0.85 | 1.00 | **yes** |" in table
    assert "Flagged: generate greedy-b1." in table


@pytest.mark.slow  # two runs of generate.py on gpt2-tiny: 30-60 s on two shared cores
def test_head_against_this_tree_on_tiny_generate(tmp_path: Path) -> None:
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, check=False).returncode != 0:
        pytest.skip("not a git checkout: no commit to compare with")
    out = tmp_path / "compare.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "compare_commits.py"), "HEAD", str(REPO), "--rounds", "1",
                           "--json", str(out), "--", *TINY_GENERATE], capture_output=True, text=True, env=_env(),
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("## old: HEAD (") and any(line.startswith("## new: ") for line in lines)
    compared = [line for line in lines if line.startswith("| generate greedy-b1 static cache |")]
    assert len(compared) == 3  # the old table, the new table, the comparison
    assert compared[-1].endswith(" |") and compared[-1].split(" | ")[-1] in ("no |", "**yes** |")
    result = json.loads(out.read_text())
    assert [run["tree"] for run in result["runs"]] == ["old", "new"]
    worktree = Path(result["runs"][0]["tformer"]).parents[2]
    assert worktree != REPO and not worktree.exists()  # the temporary worktree of HEAD was removed
    assert Path(result["runs"][1]["tformer"]).is_relative_to(REPO / "src")
    listed = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True, check=False)
    assert str(worktree) not in listed.stdout


@pytest.mark.slow  # one tiny train.py run: 12-30 s on two shared cores
def test_train_json_rows_carry_every_rounds_ratio(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "train.py"), "--tiny", "--rows", "gpt2-fp32", "--steps",
                           "2", "--warmup", "0", "--batch", "1", "--seq-len", "8", "--peak-size", "64", "--json",
                           str(out)], capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    [row] = result["rows"]
    assert row["row"] == "gpt2-fp32" and row["preset"] == "gpt2-tiny" and len(row["ratios"]) == 2
    assert row["ratios"] == [a / b for a, b in zip(row["tformer_tokens_per_s"], row["transformers_tokens_per_s"],
                                                   strict=True)]
    assert Path(result["tformer"]).is_relative_to(REPO / "src")
