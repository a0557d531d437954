"""Old code against new, side by side in one run: benchmarks/generate.py and train.py on two commits, interleaved.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compare_commits.py OLD NEW [--rounds 3] -- generate ARGS \\
        [-- train ARGS]

OLD and NEW are commits (anything `git rev-parse` takes: a hash, a branch, HEAD~3) or paths of existing trees (a
folder with src/tformer, e.g. `.` for the working tree with its uncommitted changes). A commit gets a temporary
`git worktree` (detached), removed at the end. Each `--`-separated group after the options names a benchmark
(`generate` or `train`) and the arguments it gets, the same for both commits.

Which script: both commits run the benchmark script of the NEW tree, each against its own library code
(PYTHONPATH=<tree>/src, checked from the `tformer` path the script reports). So the measurement itself (timing,
warm-up, interleaving inside the script, the transformers reference) is the same code for both, and only the
library differs; the old tree's scripts may also predate the `--json` output this harness reads. A script of the
new tree that needs an API the old code lacks fails that run with its last error line.

How: --rounds rounds; in each, every benchmark runs once per commit, back to back, the commit that goes first
alternating from round to round, so the noise of a shared machine hits both alike. Every run writes its rows
(`--json`): per row, the tformer / transformers tokens/s ratio of each of its own rounds. Those ratios are pooled
per commit and row over all runs. The output: one table per commit (tformer tokens/s and the ratio, median
[min-max]) and a comparison table: old ratio, new ratio, new / old, and a flag where new is more than 10 % slower
than old (new / old below 0.90), the acceptance bar of issue 15 ("no row more than 10 % slower than the old
code"). The ratio against transformers, measured in the same process at the same moment, is what is compared,
not raw tokens/s, so a machine that slows down between runs does not count against either commit.

--json PATH writes everything (per run: commit, benchmark, rows, seconds); --strict exits 1 when a row is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("generate", "train")
SLOWER = 0.90  # new / old ratio below this: new is more than 10 % slower than old


@dataclass
class Tree:
    """One side of the comparison: its label, what it was asked as, the commit, and the folder holding src/."""

    label: str
    ref: str
    commit: str
    path: Path
    ratios: dict[str, list[float]] = field(default_factory=dict)  # "bench row" -> per-round ratios, all runs
    tokens_per_s: dict[str, list[float]] = field(default_factory=dict)  # "bench row" -> tformer tokens/s


def _git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1] if done.stderr else 'failed'}")
    return done.stdout.strip()


def open_tree(label: str, ref: str, stack: ExitStack, scratch: Path) -> Tree:
    """An existing tree (a path with src/tformer) as it is, or a temporary detached worktree of commit `ref`."""
    path = Path(ref)
    if path.is_dir():
        if not (path / "src" / "tformer").is_dir():
            raise ValueError(f"{ref} is a folder without src/tformer; give a tformer tree or a commit")
        try:
            dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=path)
            commit = _git("rev-parse", "--short", "HEAD", cwd=path) + (" + uncommitted changes" if dirty else "")
        except ValueError:
            commit = "(not a git tree)"
        return Tree(label, ref, commit, path.resolve())
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ValueError:
        raise ValueError(f"{ref!r} is neither a folder nor a commit of {REPO}; give a hash, branch or tree "
                         "path") from None
    folder = scratch / label
    _git("worktree", "add", "--detach", str(folder), commit)
    stack.callback(_remove_worktree, folder)
    return Tree(label, ref, commit[:12], folder)


def _remove_worktree(folder: Path) -> None:
    try:
        _git("worktree", "remove", "--force", str(folder))
    except ValueError as error:  # already gone: the bookkeeping is pruned below
        print(f"compare_commits: {error}", file=sys.stderr)
    subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True, check=False)


def run_once(tree: Tree, script: Path, args: list[str], scratch: Path) -> dict:
    """One run of `script` against `tree`'s code; its JSON rows (a failed run raises with its last error line)."""
    out = scratch / f"{tree.label}-{script.stem}.json"
    env = {**os.environ, "PYTHONPATH": str(tree.path / "src"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], cwd=tree.path, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
        raise RuntimeError(f"{script.name} on {tree.label} ({tree.ref}) exited {done.returncode}: {last}")
    result = json.loads(out.read_text(encoding="utf-8"))
    expected = tree.path / "src"
    if not Path(result["tformer"]).resolve().is_relative_to(expected):
        raise RuntimeError(f"{script.name} on {tree.label} imported tformer from {result['tformer']}, not from "
                           f"{expected}; is tformer installed in a way that overrides PYTHONPATH?")
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["table"] = done.stdout
    return result


def record(tree: Tree, bench: str, result: dict) -> None:
    for row in result["rows"]:
        key = f"{bench} {row['row']}"
        tree.ratios.setdefault(key, []).extend(row["ratios"])
        tree.tokens_per_s.setdefault(key, []).extend(row["tformer_tokens_per_s"])


def run_rounds(trees: tuple[Tree, Tree], groups: list[tuple[str, list[str]]], rounds: int, scripts: Path,
               scratch: Path) -> list[dict]:
    """Every benchmark once per tree and round, the first tree alternating; the runs' results in order."""
    runs = []
    for round_ in range(rounds):
        order = trees if round_ % 2 == 0 else trees[::-1]
        for bench, args in groups:
            for tree in order:
                print(f"round {round_ + 1}/{rounds}: {bench} on {tree.label} ({tree.ref}) ...", file=sys.stderr,
                      flush=True)
                result = run_once(tree, scripts / f"{bench}.py", args, scratch)
                record(tree, bench, result)
                runs.append({"round": round_ + 1, "tree": tree.label, "commit": tree.commit, "benchmark": bench,
                             **result})
                print(f"  {result['seconds']:.0f} s: " + ", ".join(f"{r['row']} {r['ratio']:.2f}"
                                                                    for r in result["rows"]), file=sys.stderr)
    return runs


def _spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def comparison(old: Tree, new: Tree) -> list[dict]:
    """Per row both commits measured: the median ratios, new / old, and whether new is more than 10 % slower."""
    rows = []
    for key in old.ratios:
        if key in new.ratios:
            o, n = statistics.median(old.ratios[key]), statistics.median(new.ratios[key])
            speed = statistics.median(new.tokens_per_s[key]) / statistics.median(old.tokens_per_s[key])
            rows.append({"row": key, "old": o, "new": n, "new_over_old": n / o, "tokens_per_s_new_over_old": speed,
                         "slower": n / o < SLOWER})
    return rows


def format_tables(old: Tree, new: Tree, rows: list[dict], rounds: int) -> str:
    lines = []
    for tree in (old, new):
        lines += [f"## {tree.label}: {tree.ref} ({tree.commit})", "",
                  "| row | tformer tokens/s median [min–max] | ratio tformer / transformers, per round: median "
                  "[min–max] | rounds |", "|---|---|---|---|"]
        lines += [f"| {key} | {_spread(tree.tokens_per_s[key], 1)} | {_spread(ratios)} | {len(ratios)} |"
                  for key, ratios in tree.ratios.items()]
        lines.append("")
    lines += [f"## Old vs new: {old.ref} ({old.commit}) against {new.ref} ({new.commit}), {rounds} interleaved "
              "round(s)", "",
              "| row | old ratio median [min–max] | new ratio median [min–max] | new / old | "
              "tformer tokens/s new / old | more than 10 % slower |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['row']} | {_spread(old.ratios[row['row']])} | {_spread(new.ratios[row['row']])} | "
                     f"{row['new_over_old']:.2f} | {row['tokens_per_s_new_over_old']:.2f} | "
                     f"{'**yes**' if row['slower'] else 'no'} |")
    flagged = [row["row"] for row in rows if row["slower"]]
    lines += ["", "ratio = tformer / transformers tokens/s in the same run (above 1: tformer is faster); new / old "
              f"below {SLOWER:.2f} is flagged. " + (f"Flagged: {', '.join(flagged)}." if flagged
                                                    else "No row is more than 10 % slower.")]
    return "\n".join(lines)


def split_groups(argv: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(the harness's own arguments, [(benchmark, its arguments), ...]) from `OPTIONS -- BENCH ARGS [-- ...]`."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    groups, current = [], None
    for word in argv[cut + 1:]:
        if word == "--":
            current = None
        elif current is None:
            current = (word, [])
            groups.append(current)
        else:
            current[1].append(word)
    return argv[:cut], groups


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[tuple[str, list[str]]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="the old commit (hash, branch, HEAD~1) or tree path")
    parser.add_argument("new", help="the new commit or tree path ('.': this working tree)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per commit and benchmark (default: 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run and the comparison here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row is more than 10 %% slower")
    own, groups = split_groups(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds} must be at least 1")
    if not groups:
        parser.error("name a benchmark after --, e.g. -- generate --rows greedy-b1 (and -- train ... for both)")
    for bench, _ in groups:
        if bench not in BENCHMARKS:
            parser.error(f"unknown benchmark {bench!r} after --; choose from {', '.join(BENCHMARKS)}")
    return args, groups


def main(argv: list[str] | None = None) -> int:
    args, groups = parse_args(argv)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tformer-compare-")))
        try:
            trees = (open_tree("old", args.old, stack, scratch), open_tree("new", args.new, stack, scratch))
            runs = run_rounds(trees, groups, args.rounds, trees[1].path / "benchmarks", scratch)
        except (ValueError, RuntimeError) as error:
            print(f"compare_commits: {error}", file=sys.stderr)
            return 1
    old, new = trees
    rows = comparison(old, new)
    print(format_tables(old, new, rows, args.rounds))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "old": {"ref": old.ref, "commit": old.commit}, "new": {"ref": new.ref, "commit": new.commit},
            "rounds": args.rounds, "benchmarks": groups, "comparison": rows, "runs": runs}, indent=2) + "\n")
    return 1 if args.strict and any(row["slower"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
