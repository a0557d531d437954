"""Try every bad input of issue 13 against the `tformer` CLI and the Python API, and count the clean refusals.

Each `cases_*.py` beside this file defines `cases(work: Path) -> list[Case]`: it may write fixtures under `work`
(a fresh temporary folder per file) and returns the cases. A case passes when:

* the command exits with its expected code (2 for a refusal, 130 for an interrupt, 0 where the right answer is
  a warning and a result),
* standard error has no traceback, and for a refusal exactly one line (a warning case may print warnings, each
  one line),
* every path in `unchanged` has the same bytes (or the same folder listing and bytes) after the command as before,
* `expect` (a piece of text), when given, appears in standard error.

Python API cases (`python=` code) must raise a ValueError or OSError subclass, whose one-line message is checked
the same way.

    .venv/bin/python benchmarks/bad_inputs/run.py            # all files
    .venv/bin/python benchmarks/bad_inputs/run.py generation # files whose name contains "generation"
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
API = """
import sys
try:
{code}
except (ValueError, OSError) as error:
    print(" ".join(str(error).split()), file=sys.stderr); sys.exit(2)
except Exception as error:
    print(f"{{type(error).__name__}} (not a ValueError or OSError): {{error}}", file=sys.stderr); sys.exit(3)
"""


@dataclass
class Case:
    """One bad input: the CLI words (or Python code), what must hold afterwards."""

    name: str
    argv: list[str] = field(default_factory=list)
    python: str | None = None
    expect_rc: int = 2
    expect: str | None = None
    unchanged: list[Path] = field(default_factory=list)
    stdin: str | None = None
    interrupt_when: str | None = None  # send SIGINT once this text appears on stdout/stderr
    setup: Callable[[], None] | None = None
    timeout: float = 300.0


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    if not path.exists():
        return "absent"
    items = sorted(p for p in path.rglob("*")) if path.is_dir() else [path]
    for item in items:
        digest.update(str(item.relative_to(path.parent)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


def run_case(case: Case, cwd: Path) -> tuple[bool, str]:
    if case.setup is not None:
        case.setup()
    before = {p: fingerprint(p) for p in case.unchanged}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    if case.python is not None:
        code = "\n".join("    " + line for line in case.python.strip().splitlines())
        command = [sys.executable, "-c", API.format(code=code)]
    else:
        command = [sys.executable, "-m", "tformer.cli", *case.argv]
    began = time.perf_counter()
    if case.interrupt_when:
        rc, err = _interrupted(command, cwd, env, case)
    else:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, input=case.stdin,
                              timeout=case.timeout)
        rc, err = done.returncode, done.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    problems = []
    if rc != case.expect_rc:
        problems.append(f"exit {rc}, expected {case.expect_rc}")
    if "Traceback" in err:
        problems.append("traceback")
    if case.expect_rc != 0 and len(lines) != 1 and not case.interrupt_when:
        problems.append(f"{len(lines)} lines on stderr")
    if case.expect and case.expect not in err:
        problems.append(f"no {case.expect!r} in the message")
    changed = [str(p) for p in case.unchanged if fingerprint(p) != before[p]]
    if changed:
        problems.append(f"changed: {', '.join(changed)}")
    shown = lines[-1] if lines else "(nothing on stderr)"
    return not problems, f"{time.perf_counter() - began:5.1f}s  {shown[:150]}" + (
        f"   <-- {'; '.join(problems)}" if problems else "")


def _interrupted(command: list[str], cwd: Path, env: dict[str, str], case: Case) -> tuple[int, str]:
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if case.interrupt_when in line:
            process.send_signal(signal.SIGINT)
            break
    rest, _ = process.communicate(timeout=case.timeout)
    return process.returncode, "".join(seen) + rest


def main(argv: list[str]) -> int:
    wanted = argv[0] if argv else ""
    files = sorted(p for p in HERE.glob("cases_*.py") if wanted in p.stem)
    passed = total = 0
    for file in files:
        spec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with tempfile.TemporaryDirectory(prefix=f"bad-{file.stem}-") as tmp:
            work = Path(tmp)
            print(f"## {file.stem}")
            for case in module.cases(work):
                ok, line = run_case(case, work)
                passed, total = passed + ok, total + 1
                print(f"{'ok  ' if ok else 'FAIL'} {case.name:<48} {line}", flush=True)
    print(f"\n{passed} of {total} bad inputs end in one clean line with nothing lost")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
