"""benchmarks/passkey_probe.py: the curriculum, one-line option errors, and the probe's point: full attention
fetches the key from anywhere, local attention only within its window."""

from __future__ import annotations

from pathlib import Path

import pytest


def _args(tmp_path: Path, *argv: str):  # noqa: ANN202
    from passkey_probe import parse_args

    return parse_args(["--quick", "--out", str(tmp_path / "out"), *argv])


def test_the_curriculum_doubles_to_the_length_and_shares_the_steps(tmp_path: Path) -> None:
    from passkey_probe import curriculum

    args = _args(tmp_path, "--length", "100", "--start-length", "16", "--steps", "101", "--first-share", "0.5")
    stages = curriculum(args)
    assert [n for n, _ in stages] == [16, 32, 64, 100]
    assert stages[0][1] == 50 and sum(s for _, s in stages) == 101 and {s for _, s in stages[1:]} <= {17, 18}
    assert curriculum(_args(tmp_path, "--length", "64", "--start-length", "64", "--steps", "7")) == [(64, 7)]


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from passkey_probe import parse_args

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for argv, expected in ((["--kinds", "full,sparse"], "--kinds: unknown kind 'sparse'"),
                           (["--start-length", "8"], "--start-length=8 must be between 13"),
                           (["--start-length", "128", "--length", "64"], "and --length=64"),
                           (["--steps", "0"], "--steps=0 must be at least 1"),
                           (["--d-model", "30", "--n-heads", "4"], "--d-model=30 is not divisible by --n-heads=4"),
                           (["--out", str(foreign)], "holds files this benchmark did not write")):
        with pytest.raises(SystemExit) as stopped:
            parse_args(["--quick", *argv, "--out", str(tmp_path / "out")] if "--out" not in argv
                       else ["--quick", *argv])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # three small models trained: about 25 s on two shared cores
def test_full_attention_fetches_the_key_and_local_attention_only_within_its_window(tmp_path: Path) -> None:
    from passkey_probe import probe, report

    args = _args(tmp_path, "--steps", "400", "--first-share", "0.75", "--threads", "1")  # window 16, rows 16..64
    full, local = (probe(args, kind, log=lambda line: None) for kind in ("full", "local"))
    at = {r["kind"]: {a["length"]: a["digit_accuracy"] for a in r["accuracy"]} for r in (full, local)}
    assert at["full"][16] >= 0.9 and at["full"][64] >= 0.8, at
    assert at["local"][32] <= 0.35 and at["local"][64] <= 0.35, at  # the key lies past its window: chance is 0.1
    short = _args(tmp_path, "--steps", "300", "--length", "16", "--start-length", "16", "--threads", "1")
    within = probe(short, "local", log=lambda line: None)["accuracy"][0]
    assert within["length"] == 16 and within["digit_accuracy"] >= 0.9, within  # inside its window it learns the copy
    text = report([full, local], args, 1.0)
    assert "| kind | train s | N=16 | N=32 | N=64 |" in text and "local window 16 tokens" in text
