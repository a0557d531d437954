"""`tformer viz attention | positions | contextual`: files written at their size, numbers printed, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tformer.cli import main
from tformer.viz.attention_maps import heatmap_size

from ..dev_dependency import import_dev

image = import_dev("matplotlib.image", reason="the viz extra (matplotlib) is not installed")


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pixels(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000
    height, width = image.imread(path).shape[:2]
    return width, height


def test_attention_png_of_a_gpt_head(capsys: pytest.CaptureFixture[str], tmp_path: Path, gpt_dir: Path) -> None:
    out = tmp_path / "gpt.png"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", gpt_dir, "the cat sat", "--layer", "0",
                             "--head", "2", "--out", out)
    assert code == 0 and err == ""
    assert stdout == f"wrote {out}: self-attention, layer 0, head 2\n"
    assert _pixels(out)[0] >= 500


def test_attention_png_of_a_bert_pair_view(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           bert_dir: Path) -> None:
    out = tmp_path / "ab.png"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", bert_dir, "the cat sat", "--pair",
                             "it was tired", "--view", "ab", "--out", out)
    assert code == 0 and err == "" and stdout.startswith(f"wrote {out}: A -> B, layer 1, head 0")
    assert _pixels(out) == tuple(round(inches * 100) for inches in heatmap_size(3, 3))


def test_alignment_png_of_a_translation(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        translator_dir: Path) -> None:
    out = tmp_path / "align.png"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", translator_dir, "one two three", "--target",
                             "eins zwei drei", "--view", "cross", "--out", out)
    assert code == 0 and err == ""
    assert stdout == f"wrote {out}: cross-attention alignment, layer 1, mean over heads\n"
    assert _pixels(out) == tuple(round(inches * 100) for inches in heatmap_size(5, 3))


def test_attention_html_page_has_every_view(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            translator_dir: Path) -> None:
    out = tmp_path / "page.html"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", translator_dir, "one two three", "--out", out)
    assert code == 0 and err == ""
    assert "encoder self-attention, decoder self-attention, cross-attention" in stdout
    page = out.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "cross-attention" in page


def test_alignment_png_of_an_rnn_is_its_one_head(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 rnn_dir: Path) -> None:
    out = tmp_path / "rnn.png"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", rnn_dir, "one two three", "--target",
                             "eins zwei drei", "--out", out)  # its first (and only) view, the cross-attention
    assert code == 0 and err == ""
    assert stdout == f"wrote {out}: cross-attention alignment, layer 0, its one head\n"
    assert _pixels(out) == tuple(round(inches * 100) for inches in heatmap_size(5, 3))


def test_attention_html_page_of_an_rnn_shows_its_cross_attention(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                 rnn: tuple, rnn_dir: Path) -> None:
    import torch

    from .test_page import page_data

    out = tmp_path / "rnn.html"
    code, stdout, err = _run(capsys, "viz", "attention", "--model", rnn_dir, "one two three", "--target",
                             "eins zwei drei", "--out", out)
    assert code == 0 and err == "" and stdout == f"wrote {out}: cross-attention (open it in a browser)\n"
    (view,) = page_data(out.read_text())["views"]
    assert view["name"] == "cross-attention" and view["keyTokens"] == ["one", "two", "three"]
    model, tok = rnn
    target = [tok.bos_token_id, *tok.encode("eins zwei drei", add_special_tokens=False), tok.eos_token_id]
    with torch.no_grad():
        own = model.eval()(torch.tensor([tok.encode("one two three")]), decoder_input_ids=torch.tensor([target]),
                           output_attentions=True).cross_attentions[0]
    assert own.shape == (1, 1, 5, 3)
    np.testing.assert_allclose(np.array(view["weights"]), own[0][None].numpy(), rtol=1e-3)  # 4 digits on the page


def test_positions_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "pe.png"
    code, stdout, err = _run(capsys, "viz", "positions", "--out", out, "--d-model", "64", "--length", "50")
    assert code == 0 and err == "" and stdout.startswith(f"wrote {out}")
    assert _pixels(out) == (1200, 450)


def test_positions_layout_draws_the_paper_and_the_marian_sinusoids(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    """--layout interleaved (the paper's sin/cos pairs) and --layout halves ([sin | cos], Marian) draw different
    matrices of the same numbers; the printed line names the layout."""
    pictures = {}
    for layout in ("interleaved", "halves"):
        out = tmp_path / f"pe-{layout}.png"
        code, stdout, err = _run(capsys, "viz", "positions", "--out", out, "--d-model", "16", "--length", "20",
                                 "--layout", layout)
        assert code == 0 and err == "" and stdout.startswith(f"wrote {out}: the sinusoidal encoding ({layout})")
        pictures[layout] = image.imread(out)
    assert pictures["interleaved"].shape == pictures["halves"].shape
    assert (pictures["interleaved"] != pictures["halves"]).any()


def test_contextual_prints_the_similarity_of_each_layer(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        bert_dir: Path) -> None:
    out = tmp_path / "bank.png"
    code, stdout, err = _run(capsys, "viz", "contextual", "--model", bert_dir, "--word", "bank",
                             "the river bank was muddy", "the bank lent us money", "the bank lent us money",
                             "--out", out)
    assert code == 0 and err == ""
    lines = stdout.splitlines()
    assert lines[0] == "cosine similarity of 'bank' across 3 sentences (3 pairs):"
    assert lines[1].split() == ["layer", "mean", "min", "max"]
    rows = [line.split() for line in lines[2:5]]
    assert [row[0] for row in rows] == ["emb", "1", "2"]
    assert all(float(row[3]) == pytest.approx(1.0) for row in rows)  # the two identical sentences
    assert lines[5] == f"wrote {out}" and _pixels(out) == (700, 450)


@pytest.mark.parametrize("argv, message", [
    (["attention", "--model", "{bert}", "the cat", "--layer", "5", "--out", "{tmp}/a.png"],
     "layer 5 is out of range: self-attention has layers 0..1 (or -1 for the last)"),
    (["attention", "--model", "{bert}", "the cat", "--head", "-5", "--out", "{tmp}/a.png"],
     "head -5 is out of range: self-attention has heads 0..3 (or -1 for the last)"),
    (["attention", "--model", "{bert}", "the cat", "--out", "{tmp}/a.jpg"],
     "cannot write '{tmp}/a.jpg': unknown extension '.jpg'; use .png, .svg, .html"),
    (["attention", "--model", "{bert}", "the cat", "--view", "cross", "--out", "{tmp}/a.png"],
     "this model has no 'cross' view; choose one of: self"),
    (["positions", "--out", "{tmp}/pe.pdf"], "cannot write '{tmp}/pe.pdf': unknown extension '.pdf'; use .png, .svg"),
    (["positions", "--d-model", "7", "--out", "{tmp}/pe.png"],
     "d_model=7 must be a positive even number (sin/cos pairs)"),
    (["contextual", "--model", "{bert}", "--word", "bank", "the bank lent us money", "a cat sat", "--out",
      "{tmp}/c.png"], "the word 'bank' is not in the sentence 'a cat sat': each sentence must contain it"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, bert_dir: Path, argv: list[str],
                             message: str) -> None:
    argv = [a.format(bert=bert_dir, tmp=tmp_path) for a in argv]
    code, stdout, err = _run(capsys, "viz", *argv)
    assert code == 2 and stdout == ""
    assert err == f"tformer viz: error: {message.format(tmp=tmp_path)}\n"
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib_is_one_line_naming_the_extra(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, _, err = _run(capsys, "viz", "positions", "--out", tmp_path / "pe.png")
    assert code == 2
    assert err == "tformer viz: error: plotting needs matplotlib, which is not installed: pip install 'tformer[viz]'\n"
