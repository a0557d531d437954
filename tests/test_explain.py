"""`tformer explain attention`: the notes' worked examples computed the paper's way, labelled, with one-line errors."""

from __future__ import annotations

import math

import pytest

from tformer.cli import main

NOTE = "note: the lecture notes' printed"


def _block(printed: str, title: str) -> dict[str, list[float]]:
    """The rows of the printed matrix whose title line starts with `title`: {row label: numbers}."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        label, *numbers = line.split()
        try:
            rows[label] = [float(x) for x in numbers]
        except ValueError:  # the header line of key names
            continue
    return rows


def _attention_by_hand(q: list[list[float]], k: list[list[float]], v: list[list[float]],
                       causal: bool) -> list[list[float]]:
    """softmax(q k^T / sqrt(d_k)) v with plain floats: dot products, exponentials and sums written out."""
    d_k = len(q[0])
    out = []
    for i, query in enumerate(q):
        allowed = range(i + 1) if causal else range(len(k))  # causal: keys up to the query's own position
        scaled = [sum(a * b for a, b in zip(query, k[j], strict=True)) / math.sqrt(d_k) for j in allowed]
        biggest = max(scaled)
        weights = [math.exp(s - biggest) for s in scaled]
        total = sum(weights)
        alpha = [w / total for w in weights]
        out.append([sum(a * v[j][col] for a, j in zip(alpha, allowed, strict=True)) for col in range(len(v[0]))])
    return out


def _assert_printed(rows: dict[str, list[float]], labels: list[str], expected: list[list[float]],
                    decimals: int = 4) -> None:
    assert list(rows) == labels
    for label, want in zip(labels, expected, strict=True):
        assert rows[label] == pytest.approx(want, abs=0.5 * 10 ** -decimals + 1e-12), label


def test_default_is_the_notes_cross_attention_example_scaled_by_sqrt_dk(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "attention"]) == 0
    printed = capsys.readouterr().out
    q = [[-1.0, -2.5], [4.0, 3.0]]
    kv = [[-2.0, -4.0], [-2.5, -0.5], [4.5, 2.5]]
    _assert_printed(_block(printed, "out ="), ["die", "Katze"], _attention_by_hand(q, kv, kv, causal=False))
    assert _block(printed, "out =")["die"] == [-2.0015, -3.9898]  # the notes print -2.02, -3.78 (scores / 3)
    _assert_printed(_block(printed, "scores ="), ["die", "Katze"], [[12.0, 3.75, -10.75], [-20.0, -11.5, 25.5]])
    assert "the       cat    danced" in printed
    assert [line for line in printed.splitlines() if line.startswith(NOTE)] == [
        "note: the lecture notes' printed scaled, alpha and out for this example divide the scores by 3 "
        "(scaled 4.0000 = 12/3, alpha 0.94 0.06 0.00, out -2.02 -3.78), not by sqrt(d_k) = sqrt(2); "
        "these follow the paper: softmax(scores / sqrt(2))"]


def test_causal_default_is_the_notes_masked_self_attention_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "attention", "--causal"]) == 0
    printed = capsys.readouterr().out
    q = [[1.0, 1.0], [-1.0, -2.5], [4.0, 3.0], [2.0, -3.0]]
    labels = ["<s>", "die", "Katze", "tantze"]
    _assert_printed(_block(printed, "out ="), labels, _attention_by_hand(q, q, q, causal=True))
    assert _block(printed, "masked =")["die"][:2] == [-2.4749, 5.1265]
    assert "die     -2.4749   5.1265     -inf     -inf" in printed
    assert _block(printed, "mask (")["Katze"] == [1, 1, 1, 0]
    assert sum(line.startswith(NOTE) for line in printed.splitlines()) == 1
    assert "softmax of the unscaled masked scores" in printed


def test_given_matrices_labels_and_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    q, k, v = [[1.0, 0.0], [0.5, -2.5]], [[1.0, 2.0], [-3.0, 0.25], [0.0, 1.0]], [[1.0], [2.0], [-1.5]]
    assert main(["explain", "attention", "--q=[[1, 0], [0.5, -2.5]]", "--k=1 2; -3 0.25; 0 1", "--v=1;2;-1.5",
                 "--queries=a,b", "--keys", "x,y,z", "--decimals=6"]) == 0
    printed = capsys.readouterr().out
    _assert_printed(_block(printed, "out ="), ["a", "b"], _attention_by_hand(q, k, v, causal=False), decimals=6)
    assert NOTE not in printed


def test_q_alone_is_self_attention_and_negative_numbers_parse(capsys: pytest.CaptureFixture[str]) -> None:
    q = [[-1.0, -2.5], [4.0, 3.0], [2.0, -3.0]]
    assert main(["explain", "attention", "--causal", "--q", "-1 -2.5; 4 3; 2 -3"]) == 0
    first = capsys.readouterr().out
    _assert_printed(_block(first, "out ="), ["q1", "q2", "q3"], _attention_by_hand(q, q, q, causal=True))
    assert NOTE not in first
    assert main(["explain", "attention", "--causal", "--q=-1,-2.5;4,3;2,-3"]) == 0
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(("argv", "message"), [
    (["--q=[[1, 2], [3]]"], "--q: rows have different lengths (2, 1); give every row the same number of columns"),
    (["--q=1 2; 3 x"], "--q: 'x' in row 2 is not a number; write numbers like -2.5"),
    (["--q=[[1, 2], [3, foo]]"], "--q: '[[1, 2], [3, foo]]' is not a nested list of numbers"),
    (["--q=1 2; ;3 4"], "has an empty row"),
    (["--q=1 2", "--k=1 2 3", "--v=1"], "Q has d_k=2 columns but K has 3: queries and keys need the same number"),
    (["--q=1 2", "--k=1 2; 3 4", "--v=1"], "K has 2 rows but V has 1: give one value row per key row"),
    (["--q=1 2", "--k=1 2"], "--v is missing"),
    (["--k=1 2", "--v=1"], "--k was given without --q"),
    (["--queries=die"], "--queries names 1 tokens (die) but Q has 2 rows: give one name per row of Q"),
    (["--q=1 2; 3 4", "--keys=a,b,c"], "--keys names 3 tokens (a,b,c) but K has 2 rows"),
    (["--q=1 2; 3 4", "--k=1 2", "--v=1", "--causal"], "--causal needs at least as many keys as queries"),
    (["--decimals=-1"], "--decimals -1 is negative"),
])
def test_errors_are_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "attention", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("tformer explain: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert captured.out == ""
