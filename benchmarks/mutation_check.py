"""Do the tests catch what they name? Apply deliberate bugs, one at a time, to a copy of src/ and run the tests.

Each mutation (benchmarks/mutations.py) names a file under src/, an exact piece of text in it, what to put
instead, and the test files (or node ids, with an optional -k) that must fail with the bug in place. The working
tree is never touched: src/ is copied once into a temporary folder, each mutation is written into the copy, the
tests run with PYTHONPATH at the copy, and the file is put back before the next one.

A mutation whose text is no longer in its file (a refactor moved it) is "stale": nothing runs, and the script
exits 2, so a row cannot silently become vacuous. First the named tests run once on the unchanged copy (the
baseline): a test that fails anyway would "catch" every bug. Exit code 0 when every mutation is caught.

    .venv/bin/python benchmarks/mutation_check.py                 # every mutation, then the table
    .venv/bin/python benchmarks/mutation_check.py --list          # the mutations, nothing run
    .venv/bin/python benchmarks/mutation_check.py --only exact-match-inverted --only mlm-unchanged-randomised
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutations import MUTATIONS, Mutation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def stale(mutations: list[Mutation], src: Path) -> list[str]:
    """The names of mutations whose old text is not exactly once in their file (missing file included)."""
    found = []
    for m in mutations:
        path = src / m.file
        count = path.read_text(encoding="utf-8").count(m.old) if path.is_file() else 0
        if count != 1:
            found.append(f"{m.name}: {m.file} holds the old text {count} times (needs exactly 1); update the row")
    return found


def pytest_command(tests: list[str], select: str | None) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return [*command, "-k", select] if select else command


def run_tests(command: list[str], copy: Path, timeout: float) -> tuple[str, float, str]:
    """Run pytest against the copy: ("passed" | "failed" | "error" | "timeout", seconds, last output lines)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    begin = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - begin, ""
    seconds = time.perf_counter() - begin
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    # pytest: 0 all passed, 1 some failed; 2-5 interrupted, internal or usage error, nothing collected
    outcome = {0: "passed", 1: "failed"}.get(done.returncode, "error")
    return outcome, seconds, tail


def baseline(mutations: list[Mutation], copy: Path, timeout: float) -> bool:
    """The named tests on the unchanged copy, each distinct selection once; True when they all pass."""
    ok = True
    for tests, select in dict.fromkeys((tuple(m.tests), m.select) for m in mutations):
        outcome, seconds, tail = run_tests(pytest_command(list(tests), select), copy, timeout)
        shown = " ".join(tests) + (f" -k {select!r}" if select else "")
        print(f"baseline {outcome:>7} {seconds:6.1f} s  {shown}", flush=True)
        if outcome != "passed":
            print(tail, flush=True)
            ok = False
    return ok


def check(mutation: Mutation, copy: Path, timeout: float) -> tuple[str, float, str]:
    """Apply one mutation to the copy, run its tests, put the file back: (outcome, seconds, tail)."""
    path = copy / mutation.file
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(mutation.old, mutation.new, 1), encoding="utf-8")
    try:
        return run_tests(pytest_command(list(mutation.tests), mutation.select), copy, timeout)
    finally:
        path.write_text(original, encoding="utf-8")


def table(rows: list[tuple[Mutation, str, float]]) -> str:
    lines = ["| mutation | file | tests | caught | seconds |", "|---|---|---|---|---|"]
    for m, outcome, seconds in rows:
        tests = " ".join(f"`{t}`" for t in m.tests) + (f" `-k {m.select}`" if m.select else "")
        caught = {"failed": "yes", "passed": "**no**"}.get(outcome, f"**{outcome}**")
        lines.append(f"| {m.name}: {m.description} | `{m.file}` | {tests} | {caught} | {seconds:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unchanged copy")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run (default 300)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [m.name for m in MUTATIONS]
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        print(f"mutation_check: unknown mutation {unknown[0]!r}; --list shows the names", file=sys.stderr)
        return 2
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:32} {m.file:34} {' '.join(m.tests)}{f' -k {m.select}' if m.select else ''}")
        return 0
    problems = stale(chosen, ROOT / "src")
    if problems:
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        return 2
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tformer-mutation-") as work:
        copy = Path(work) / "src"
        shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        if not args.no_baseline and not baseline(chosen, copy, args.timeout):
            print("mutation_check: the named tests fail without any mutation; fix them first", file=sys.stderr)
            return 2
        rows = []
        for m in chosen:
            outcome, seconds, tail = check(m, copy, args.timeout)
            print(f"{m.name:32} {outcome:>7} {seconds:6.1f} s", flush=True)
            if outcome not in ("failed", "passed"):
                print(tail, flush=True)
            rows.append((m, outcome, seconds))
    print()
    print(table(rows))
    missed = [m.name for m, outcome, _ in rows if outcome != "failed"]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} mutations caught in {time.perf_counter() - begin:.0f} s"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
