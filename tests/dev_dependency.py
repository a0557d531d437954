"""What a test needs beyond the package: skipped on a developer's machine that lacks it, a failure under CI=true.

CI installs the dev extra (and Chromium, and has the shared data folder), so there a missing dev dependency is a
broken install, not a reason for tests to vanish quietly. Skips for absent hardware (CUDA) do not go through here.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    """True under CI=true (as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing(reason: str) -> None:
    """Skip with `reason`, or fail with it under CI=true."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}; CI must run this test: install what it needs", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_dev(module: str, reason: str | None = None) -> ModuleType:
    """`pytest.importorskip(module)` for a dev dependency, except that under CI=true a missing one fails."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing(reason or f"the dev dependency {module!r} cannot be imported ({error})")
        raise  # not reached: missing() always raises
