"""A run folder belongs to one run: it is checked writable, locked while a run uses it, and never overwritten.

`claim_run_folder` runs before any data is prepared (rank 0 alone under torchrun):

1. the folder is created if needed and a probe file is written and removed (a file where the folder should be,
   a read-only or full disk: one line now, not at the first checkpoint);
2. `RUN/.tformer.lock` is taken: it names the process (pid, host) holding the folder; a second run refuses,
   a lock whose process is gone (a killed run on this host) is taken over;
3. a folder that already holds a run (recipe.yaml, metrics.jsonl, checkpoints/, final/) is refused unless the
   run resumes it, or `overwrite` clears the old run first: its own files (`RUN_FILES`, `RUN_FOLDERS`) go,
   anything else a user put in the folder stays.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tformer.training.recipe import Recipe

LOCK_NAME = ".tformer.lock"
PROBE_NAME = ".tformer-write-probe"
RUN_FILES = ("recipe.yaml", "metrics.jsonl", "metrics.json", "loss.png", "attention.html", "alignment.png")
RUN_FOLDERS = ("checkpoints", "final", "data", "tensorboard")
CLEARED = ", ".join([*RUN_FILES, *(f"{name}/" for name in RUN_FOLDERS)])


def run_marks(run_dir: Path) -> list[str]:
    """What shows that `run_dir` holds a run: recipe.yaml, metrics.jsonl, a non-empty checkpoints/ or final/."""
    marks = [name for name in ("recipe.yaml", "metrics.jsonl") if (run_dir / name).is_file()]
    for name in ("checkpoints", "final"):
        folder = run_dir / name
        if folder.is_dir() and any(folder.iterdir()):
            marks.append(f"{name}/")
    return marks


def check_writable(run_dir: Path) -> None:
    """Create `run_dir` (and its parents) and write a probe file in it; a clear OSError when that fails."""
    where = f"out.dir={run_dir}"
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{where} is a file, not a folder; pick a folder for --out.dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), run_dir)
        raise NotADirectoryError(f"{where} cannot be created: {blocking} is a file, not a folder; pick another "
                                 f"--out.dir") from None
    except OSError as error:
        raise OSError(error.errno, f"{where} cannot be created ({error.strerror}); pick a folder you can write to "
                                   f"with --out.dir") from None
    probe = run_dir / PROBE_NAME
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise OSError(error.errno, f"{where} cannot be written ({error.strerror}); free space or pick a folder you "
                                   f"can write to with --out.dir") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


class RunLock:
    """The lock file of a run folder, held by this process until `release()` (or exit, or garbage collection)."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token
        self._finalizer = weakref.finalize(self, _remove_lock, path, token)

    def release(self) -> None:
        self._finalizer()


def _remove_lock(path: Path, token: str) -> None:
    """Remove the lock file if it is still ours (a run that took over a stale lock keeps its own)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("token") == token:
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: alive
        return True
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _holder(path: Path) -> dict[str, Any] | None:
    """What the lock file says (pid, host, started, command), or None when it cannot be read."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("pid"), int) else None


def take_lock(run_dir: Path, say: Callable[[str], Any] = print) -> RunLock:
    """Lock `run_dir` for this process; refuse in one line when a live process holds it, take over a stale lock."""
    path = run_dir / LOCK_NAME
    token = uuid.uuid4().hex
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
            "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None and _age(path) < 10:  # just created by a run that is still writing its pid
                raise BlockingIOError(f"out.dir={run_dir} is being locked by another run starting now ({path}); "
                                      f"wait for it to finish or pick another --out.dir") from None
            if holder is not None and _held_by_another(holder):
                raise BlockingIOError(
                    f"out.dir={run_dir} is in use by another run (pid {holder['pid']} on {holder.get('host')}, "
                    f"started {holder.get('started')}); wait for it to finish or pick another --out.dir (if that "
                    f"process is gone, delete {path})") from None
            if holder is not None and holder["pid"] != os.getpid():
                say(f"taking over the lock of a run that is gone (pid {holder['pid']}, started "
                    f"{holder.get('started')}): {path}")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(mine, handle)
        return RunLock(path, token)
    raise BlockingIOError(f"out.dir={run_dir}: another run is taking {path} at the same moment; pick another "
                          f"--out.dir or try again")


def _held_by_another(holder: dict[str, Any]) -> bool:
    """A lock of another live process; one of ours (an earlier Trainer of this process) or of a dead pid is not."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: its pid cannot be checked from here
    return holder["pid"] != os.getpid() and _alive(holder["pid"])


def clear_run(run_dir: Path, keep: Iterable[Path] = ()) -> list[str]:
    """Delete the files and folders a run writes (RUN_FILES, RUN_FOLDERS); returns the names deleted.

    `keep` are paths the new run reads (a tokenizer, a model to start from): clearing a folder holding one is
    refused, so --overwrite never deletes its own input.
    """
    doomed = [run_dir / name for name in (*RUN_FILES, *RUN_FOLDERS) if (run_dir / name).exists()]
    for path in keep:
        resolved = Path(path).resolve()
        for item in doomed:
            if resolved == item.resolve() or item.resolve() in resolved.parents:
                raise ValueError(f"--overwrite would delete {item}, which this run reads ({path}); copy it out of "
                                 f"{run_dir} first or pick another --out.dir")
    names = [item.name + ("/" if item.is_dir() else "") for item in doomed]
    for item in doomed:
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
    return names


def refuse_held_run(run_dir: Path, marks: list[str]) -> ValueError:
    """The one-line refusal for a folder that holds a run and was given neither resume nor overwrite."""
    return ValueError(f"out.dir={run_dir} already holds a run ({', '.join(marks)}); continue it with --resume, "
                      f"pick a new --out.dir, or pass --overwrite to delete the old run first (only what a run writes: "
                      f"{CLEARED})")


def claim_run_folder(run_dir: Path, *, resume: bool, overwrite: bool, reads: Iterable[Path] = (),
                     say: Callable[[str], Any] = print) -> RunLock:
    """Check `run_dir` writable, lock it, and refuse (or with `overwrite` clear) a run it already holds."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in out.dir and --overwrite deletes it; pass one of them")
    check_writable(run_dir)
    lock = take_lock(run_dir, say)
    try:
        marks = run_marks(run_dir)
        if marks and not resume:
            if not overwrite:
                raise refuse_held_run(run_dir, marks)
            removed = clear_run(run_dir, reads)
            say(f"overwrite: deleted the old run's {', '.join(removed)} in {run_dir} (other files there are kept)")
    except BaseException:
        lock.release()
        raise
    return lock


def paths_read(recipe: Recipe) -> list[Path]:
    """Files and folders the recipe reads (data, tokenizer, starting model), which clearing a run must not delete."""
    d = recipe.data
    named = [d.train_source, d.train_target, d.valid_source, d.valid_target, d.test_source, d.test_target,
             recipe.model.from_pretrained, d.prepared, d.tokenizer if d.tokenizer.endswith(".json") else None,
             *(p for p in d.text if not any(ch in p for ch in "*?["))]
    return [recipe.data_path(p) for p in named if p]
