"""Stopping a long run cleanly: Ctrl-C or SIGTERM asks the loop to stop after the step it is in.

A training loop runs inside `stop_requests()` and checks `requested()` between steps; the first signal only
sets the flag (the step finishes, a checkpoint is written, the loop raises `Interrupted`), a second one
stops at once with `KeyboardInterrupt`. The CLI prints an `Interrupted` as one line and exits with 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_CODE = 130  # 128 + SIGINT, what shells report for a Ctrl-C


class Interrupted(Exception):  # noqa: N818 - named for what the user did, as KeyboardInterrupt is
    """A run stopped on a signal after finishing its step; the message says what was kept and how to go on."""


class StopRequests:
    """The flag a signal handler sets; `signal_name` says which signal asked (SIGINT or SIGTERM)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Within this block SIGINT and SIGTERM set a flag instead of raising; a second signal raises at once.

    Outside the main thread (where Python cannot install handlers) the block only hands out a flag that stays off.
    """
    flag = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if flag.signal_name is not None:
            raise KeyboardInterrupt
        flag.signal_name = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
