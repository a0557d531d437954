"""Bad inputs at the CLI's edge: errors of the file system reach the user as one line."""

from __future__ import annotations

from pathlib import Path

from run import Case


def cases(work: Path) -> list[Case]:
    text = work / "a.txt"
    text.write_text("hello world\n" * 200, encoding="utf-8")
    return [
        Case("prepare: an input that is missing", ["prepare", str(work / "missing.txt"), "--out", str(work / "p"),
                                                    "--tokenizer", "char"]),
    ]
