"""A T-DMCA's attention (issue 17): a memory-compressed layer's keys are its slots, named "tokens i–j: ...", in the
captured view, the page's data and the plots; a local layer keeps its N x N banded weights over the tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer.cli import main
from tformer.viz import capture_attention, plot_attention
from tformer.viz.attention_maps import heatmap_size
from tformer.viz.page import AttentionView, attention_page_html

from ..dev_dependency import import_dev

TEXT = "the cat sat on the mat the bank lent us money"


def _slot_labels(tokens: list[str]) -> list[str]:
    """By hand: the first slot (token 0), then one per finished group of 3 tokens, named by its text (byte-level
    tokens carry their spaces: " cat")."""
    groups = [f"tokens {s}–{s + 2}: {''.join(tokens[s:s + 3]).strip()}" for s in range(0, len(tokens) - 2, 3)]
    return [f"first (token 0: {tokens[0].strip()})", *groups]


@pytest.fixture(scope="module")
def view(tdmca: tuple) -> AttentionView:
    (captured,) = capture_attention(*tdmca, TEXT)
    return captured


def test_the_compressed_layer_keys_are_its_slots_and_the_local_layer_keys_its_tokens(view: AttentionView) -> None:
    tokens = view.query_tokens
    n = len(tokens)
    assert n >= 9 and "".join(tokens) == TEXT
    assert view.keys_of(0) == view.key_tokens == tokens
    assert view.keys_of(1) == _slot_labels(tokens) and view.keys_of(1) != tokens
    assert view.keys_of(1)[1] == "tokens 0–2: the cat sat" and view.keys_of(1)[2] == "tokens 3–5: on the mat"
    assert [view.layer_name(layer) for layer in range(view.n_layers)] == ["0 (local)", "1 (compressed)"]
    assert [np.shape(weights) for weights in view.weights] == [(4, n, n), (4, n, 1 + n // 3)]


def test_the_captured_weights_are_the_models_own_with_each_layers_visibility(view: AttentionView,
                                                                              tdmca: tuple) -> None:
    model, tok = tdmca
    with torch.no_grad():
        out = model(torch.tensor([tok.backend.encode(TEXT).ids]), output_attentions=True)
    for layer in range(2):
        np.testing.assert_allclose(view.weights[layer], out.attentions[layer][0].numpy(), atol=1e-6)
        np.testing.assert_allclose(view.weights[layer].sum(-1), 1.0, atol=1e-5)
    n = len(view.query_tokens)
    query, key = np.indices((n, n))
    local = (key <= query) & (key // 4 >= query // 4 - 1)  # its own block of 4 and the one before
    assert np.all(view.weights[0][:, ~local] == 0) and not local.all()
    query, slot = np.indices((n, n // 3))
    compressed = np.concatenate([np.ones((n, 1), bool), 3 * slot + 2 <= query], axis=1)  # a slot once its group ends
    assert np.all(view.weights[1][:, ~compressed] == 0) and not compressed.all()


def test_the_page_data_carries_the_compressed_layers_labels(view: AttentionView) -> None:
    page = attention_page_html([view])
    match = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.S)
    assert match is not None
    (data,) = json.loads(match.group(1))["views"]
    n = len(view.query_tokens)
    assert data["keyTokens"] == view.query_tokens
    assert data["layerKeyTokens"] == {"1": _slot_labels(view.query_tokens)}
    assert data["layerNames"] == ["0 (local)", "1 (compressed)"]
    assert [len(data["weights"][layer][0][0]) for layer in range(2)] == [n, 1 + n // 3]
    assert "tokens 0\\u20132: the cat" in page  # JSON writes the en dash as an escape


@pytest.mark.parametrize(("change", "message"), [
    (dict(layer_keys={1: ["a", "b"]}), r"layer 1's weights have \d+ keys .* but layer_keys\[1\] has 2"),
    (dict(layer_keys={5: ["a"]}), r"layer_keys names layer 5 but the weights have layers 0\.\.1"),
    (dict(weights=[np.ones((4, 3, 3)), np.ones((4, 3))]), r"layer 1's weights have shape \(4, 3\); pass one 3-D"),
    (dict(weights=[np.ones((4, 3, 3)), np.ones((2, 3, 3))]), "layer 1 has 2 heads but layer 0 has 4"),
])
def test_wrong_per_layer_keys_are_one_line_errors(view: AttentionView, change: dict, message: str) -> None:
    fields = dict(name=view.name, query_tokens=view.query_tokens, key_tokens=view.key_tokens, weights=view.weights,
                  layer_keys=view.layer_keys)
    if "weights" in change:
        fields.update(query_tokens=list("abc"), key_tokens=list("abc"), layer_keys={})
    with pytest.raises(ValueError, match=message) as error:
        attention_page_html([AttentionView(**{**fields, **change})])
    assert "\n" not in str(error.value)


def test_the_heatmap_of_a_compressed_layer_has_its_slots_along_x(view: AttentionView, tmp_path: Path) -> None:
    image = import_dev("matplotlib.image", reason="the viz extra (matplotlib) is not installed")
    matplotlib = import_dev("matplotlib")
    n = len(view.query_tokens)
    path = plot_attention(view, 1, 0, tmp_path / "compressed.png")
    height, width = image.imread(path).shape[:2]
    assert (width, height) == tuple(round(inches * 100) for inches in heatmap_size(n, 1 + n // 3))
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as <text>, not glyph paths, so it can be read
        compressed = plot_attention(view, 1, 0, tmp_path / "compressed.svg").read_text(encoding="utf-8")
        local = plot_attention(view, 0, 0, tmp_path / "local.svg").read_text(encoding="utf-8")
    assert "tokens 0–2: the cat" in compressed and "layer 1 (compressed), head 0" in compressed
    assert "tokens 0–2" not in local and "layer 0 (local), head 0" in local


def test_tformer_viz_draws_the_compressed_layer_and_refuses_a_text_shorter_than_a_group(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tdmca_dir: Path) -> None:
    import_dev("matplotlib")
    out = tmp_path / "m.png"
    assert main(["viz", "attention", "--model", str(tdmca_dir), TEXT, "--layer", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: self-attention, layer 1 (compressed), head 0\n"
    page = tmp_path / "page.html"
    assert main(["viz", "attention", "--model", str(tdmca_dir), TEXT, "--out", str(page)]) == 0
    assert "tokens 0\\u20132" in page.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["viz", "attention", "--model", str(tdmca_dir), "the", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compressed layers read groups of 3" in err
