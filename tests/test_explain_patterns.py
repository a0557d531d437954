"""`tformer explain attention --pattern local|compressed`: the visibility grid of the T-DMCA's attentions on the
small example, pinned line by line, the compressed key slots named by their tokens, and one-line errors."""

from __future__ import annotations

import pytest
import torch

from tformer.cli import main
from tformer.layers.compressed_attention import KeyValueCompression, compressed_attention

COMPRESSED_12_3 = """\
key slots (5 for 12 tokens)
first (token 0): token 0's key and value, uncompressed; every query sees it
tokens 0–2: slot j=0, compressed from 3 tokens; seen from query 2 on
tokens 3–5: slot j=1, compressed from 3 tokens; seen from query 5 on
tokens 6–8: slot j=2, compressed from 3 tokens; seen from query 8 on
tokens 9–11: slot j=3, compressed from 3 tokens; seen from query 11 on

mask (1 = the query (row) may attend to the key (column))
    first    0–2    3–5    6–8   9–11
0       1      0      0      0      0
1       1      0      0      0      0
2       1      1      0      0      0
3       1      1      0      0      0
4       1      1      0      0      0
5       1      1      1      0      0
6       1      1      1      0      0
7       1      1      1      0      0
8       1      1      1      1      0
9       1      1      1      1      0
10      1      1      1      1      0
11      1      1      1      1      1

34 visible (query, slot) pairs of 12 x 5 = 60 scores; full causal attention: 78 of 12 x 12 = 144
"""

LOCAL_12_4_LOOK_BACK_1 = """\
mask (1 = the query (row) may attend to the key (column))
     0   1   2   3   4   5   6   7   8   9  10  11
0    1   0   0   0   0   0   0   0   0   0   0   0
1    1   1   0   0   0   0   0   0   0   0   0   0
2    1   1   1   0   0   0   0   0   0   0   0   0
3    1   1   1   1   0   0   0   0   0   0   0   0
4    1   1   1   1   1   0   0   0   0   0   0   0
5    1   1   1   1   1   1   0   0   0   0   0   0
6    1   1   1   1   1   1   1   0   0   0   0   0
7    1   1   1   1   1   1   1   1   0   0   0   0
8    0   0   0   0   1   1   1   1   1   0   0   0
9    0   0   0   0   1   1   1   1   1   1   0   0
10   0   0   0   0   1   1   1   1   1   1   1   0
11   0   0   0   0   1   1   1   1   1   1   1   1

62 visible (query, key) pairs; full causal attention: 78 of 12 x 12 = 144
"""

LOCAL_6_2_LOOK_BACK_0 = """\
mask (1 = the query (row) may attend to the key (column))
   0  1  2  3  4  5
0  1  0  0  0  0  0
1  1  1  0  0  0  0
2  0  0  1  0  0  0
3  0  0  1  1  0  0
4  0  0  0  0  1  0
5  0  0  0  0  1  1
"""


def _explain(capsys: pytest.CaptureFixture[str], *options: str) -> str:
    assert main(["explain", "attention", *options]) == 0
    return capsys.readouterr().out


def test_compressed_pattern_names_each_key_slot_and_prints_the_grid(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys, "--pattern", "compressed")
    assert printed.startswith("memory-compressed attention (Liu et al. 2018): 12 tokens, compression 3: ")
    assert "query i sees slot j (tokens 3j to 3j+2) once its group has ended: 3j+2 <= i\n\n" in printed
    assert printed.endswith(COMPRESSED_12_3)


def test_the_compressed_grid_is_what_the_layer_attends_to(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys, "--pattern", "compressed")
    rows = printed.split("mask (1 = the query (row) may attend to the key (column))\n")[1].splitlines()[1:13]
    grid = [[int(x) for x in row.split()[1:]] for row in rows]
    q, k, v = torch.randn(3, 1, 1, 12, 4).unbind(0)
    _, weights = compressed_attention(q, k, v, KeyValueCompression(4, 1, 3), return_weights=True)
    assert (weights[0, 0] != 0).int().tolist() == grid


def test_local_pattern_prints_the_block_window(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys, "--pattern", "local")
    assert printed.startswith("local attention (Liu et al. 2018): 12 tokens in blocks of 4, look_back=1: query i "
                              "sees key j when j <= i and j is in its own block or the 1 block before it\n\n")
    assert printed.endswith(LOCAL_12_4_LOOK_BACK_1)


def test_local_pattern_with_the_papers_own_blocks_only(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys, "--pattern", "local", "--length", "6", "--block-size", "2", "--look-back", "0")
    assert "look_back=0: query i sees key j when j <= i and j is in its own block\n" in printed
    assert LOCAL_6_2_LOOK_BACK_0 in printed
    assert printed.endswith("9 visible (query, key) pairs; full causal attention: 21 of 6 x 6 = 36\n")


def test_compressed_pattern_at_another_compression(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys, "--pattern", "compressed", "--length", "5", "--compression", "2")
    assert "tokens 2–3: slot j=1, compressed from 2 tokens; seen from query 3 on\n" in printed
    assert "   first    0–1    2–3\n0      1      0      0\n" in printed
    assert printed.endswith("4      1      1      1\n\n11 visible (query, slot) pairs of 5 x 3 = 15 scores; "
                            "full causal attention: 15 of 5 x 5 = 25\n")  # 1 + 2 + 2 + 3 + 3


def test_without_pattern_the_worked_example_is_printed_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _explain(capsys)
    assert printed.startswith("scaled dot-product attention (Vaswani et al. 2017)")
    assert "mask (1 = the query (row)" not in printed


@pytest.mark.parametrize(("options", "message"), [
    (["--pattern", "sliding"], "--pattern 'sliding' is not an attention pattern: give one of local, compressed"),
    (["--pattern", "local", "--q=1 2"], "--pattern prints a mask, not a computation: drop --q"),
    (["--pattern", "compressed", "--causal"], "drop --causal"),
    (["--block-size", "4"], "--block-size only applies with --pattern local|compressed"),
    (["--pattern", "local", "--compression", "2"], "--compression does not apply to --pattern local: drop it"),
    (["--pattern", "compressed", "--block-size", "2"], "--block-size does not apply to --pattern compressed"),
    (["--pattern", "compressed", "--length", "2"], "--length 2 is shorter than --compression 3"),
    (["--pattern", "compressed", "--compression", "0"], "compression=0 must be at least 1"),
    (["--pattern", "local", "--block-size", "0"], "local_block_size=0 must be at least 1"),
    (["--pattern", "local", "--length", "0"], "--length 0 has no tokens"),
])
def test_a_bad_pattern_option_is_a_one_line_error(capsys: pytest.CaptureFixture[str], options: list[str],
                                                  message: str) -> None:
    assert main(["explain", "attention", *options]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tformer explain: error: ") and message in error
    assert error.count("\n") == 1
