"""The benchmark scripts import each other as top-level modules (`from forward import ...`), as when they run
from benchmarks/: put that folder on sys.path for the tests that import them."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
