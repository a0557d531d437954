"""The attention page: its HTML carries escaped data and validates input; in headless Chromium it draws the lines."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer.viz.page import AttentionView, attention_page_html, write_attention_page

from ..dev_dependency import import_dev, missing

XSS = "<script>alert(1)</script>"
IMG_XSS = '<img src=x onerror="alert(2)">'
LAYERS, HEADS = 2, 3


def attention(queries: int, keys: int, seed: int) -> np.ndarray:
    """Sharp softmax weights (layers, heads, queries, keys) with 3 decimals, which the page's rounding keeps."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=3.0, size=(LAYERS, HEADS, queries, keys))
    weights = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    return np.round(weights, 3)


SENTENCE_A = ["[CLS]", XSS, "the", "cat", IMG_XSS]
SENTENCE_B = ["a", "dog", "&amp;", "{{js}}"]
VIEWS = [
    AttentionView("encoder self-attention", SENTENCE_A, SENTENCE_A, attention(5, 5, seed=0)),
    AttentionView("A -> B", SENTENCE_A, SENTENCE_B, attention(5, 4, seed=1)),
    AttentionView("B -> A", SENTENCE_B, SENTENCE_A, torch.tensor(attention(4, 5, seed=2))),
]


def page_data(page_html: str) -> dict:
    match = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page_html, re.S)
    assert match is not None
    return json.loads(match.group(1))


# --- the HTML string ---------------------------------------------------------------------------------------------


def test_tokens_travel_as_escaped_json_never_as_markup():
    page_html = attention_page_html(VIEWS)
    assert XSS not in page_html and "<img" not in page_html
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page_html
    assert page_html.count("</script>") == 2  # the data and the page's own script, nothing from a token
    data = page_data(page_html)
    assert [view["name"] for view in data["views"]] == ["encoder self-attention", "A -> B", "B -> A"]
    assert data["views"][1]["queryTokens"] == SENTENCE_A and data["views"][1]["keyTokens"] == SENTENCE_B
    assert "{{js}}" in data["views"][2]["queryTokens"]  # not replaced by the page's script


def test_weights_are_kept_to_four_significant_digits():
    weights = torch.softmax(torch.randn(1, 2, 6, 6, dtype=torch.float64) * 5, dim=-1)
    weights[0, 0, 0, 0] = 1e-30
    data = page_data(attention_page_html([AttentionView("v", list("abcdef"), list("abcdef"), weights)]))
    written = np.array(data["views"][0]["weights"])
    np.testing.assert_allclose(written, weights.numpy(), rtol=5e-4, atol=1e-15)
    numbers = re.findall(r"[-\d.e]+", json.dumps(data["views"][0]["weights"]))
    digits = [len(re.sub(r"e.*", "", n).replace(".", "").lstrip("0")) for n in numbers]
    assert max(digits) <= 4


def test_title_is_escaped_and_threshold_is_carried():
    page_html = attention_page_html(VIEWS[:1], title="<b>tiny</b> & co", threshold=0.05)
    assert "<title>&lt;b&gt;tiny&lt;/b&gt; &amp; co</title>" in page_html
    assert page_data(page_html)["threshold"] == 0.05


def test_page_needs_no_network():
    page_html = attention_page_html(VIEWS)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page_html)
    assert "@import" not in page_html


def test_write_attention_page_creates_the_folder_and_writes_the_html(tmp_path):
    path = write_attention_page(tmp_path / "out" / "attention.html", VIEWS, title="t")
    assert path == tmp_path / "out" / "attention.html"
    assert path.read_text(encoding="utf-8") == attention_page_html(VIEWS, title="t")


def test_bfloat16_tensors_are_accepted():
    weights = torch.full((1, 1, 2, 2), 0.5, dtype=torch.bfloat16)
    data = page_data(attention_page_html([AttentionView("v", ["a", "b"], ["c", "d"], weights)]))
    assert data["views"][0]["weights"] == [[[[0.5, 0.5], [0.5, 0.5]]]]


@pytest.mark.parametrize(
    ("views", "threshold", "message"),
    [
        ([], 0.01, "views is empty"),
        ([AttentionView("v", ["a"], ["b"], np.ones((1, 1, 1)))], 0.01, r"shape \(1, 1, 1\).*weights\[None\]"),
        ([AttentionView("v", ["a", "b"], ["c"], np.ones((1, 1, 1, 1)))], 0.01, "1 queries.*query_tokens has 2"),
        ([AttentionView("v", ["a"], ["c"], np.ones((1, 1, 1, 3)))], 0.01, "3 keys.*key_tokens has 1"),
        ([AttentionView("v", ["a"], ["c"], np.full((1, 1, 1, 1), np.nan))], 0.01, r"NaN .*\(0, 0, 0, 0\).*nan_to_num"),
        ([AttentionView("v", [], [], np.ones((0, 1, 0, 0)))], 0.01, "no layers or heads"),
        (VIEWS, 1.5, "threshold 1.5"),
    ],
)
def test_bad_input_raises_a_one_line_error_naming_the_fix(views, threshold, message):
    with pytest.raises(ValueError, match=message) as error:
        attention_page_html(views, threshold=threshold)
    assert "\n" not in str(error.value)


# --- the page in headless Chromium -------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for candidate in (os.environ.get("TFORMER_CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and (shutil.which(candidate) or (Path(candidate).is_file() and candidate))
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        missing("no Chromium found (install Debian's `chromium` or set TFORMER_CHROMIUM): browser tests skip")
    sync_playwright = import_dev("playwright.sync_api", "playwright is not importable (pip install playwright): "
                                 "browser tests skip").sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory) -> str:
    return write_attention_page(tmp_path_factory.mktemp("page") / "attention.html", VIEWS).resolve().as_uri()


@pytest.fixture
def problems() -> list[str]:
    """Console errors, uncaught exceptions and dialogs (an alert would mean a token ran as script) seen by `page`."""
    return []


@pytest.fixture
def page(browser, page_url, problems):
    """A fresh tab on the page; after the test, asserts nothing logged an error and no dialog opened."""
    page = browser.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(page_url)
    page.wait_for_selector("#lines line", state="attached")
    yield page
    page.close()
    assert problems == []


def drawn(page) -> set[tuple[int, int, int]]:
    """(head, query, key) of every line in the SVG; asserts no line is drawn twice."""
    lines = page.eval_on_selector_all(
        "#lines line", "lines => lines.map(l => [+l.dataset.head, +l.dataset.query, +l.dataset.key])"
    )
    assert len(lines) == len({tuple(line) for line in lines})
    return {tuple(line) for line in lines}


def expected(view: int, layer: int, heads, threshold: float = 0.01, query=None, key=None) -> set[tuple[int, int, int]]:
    weights = np.asarray(VIEWS[view].weights)[layer]
    pairs = {(int(h), int(q), int(k)) for h, q, k in np.argwhere(weights > threshold) if h in heads}
    return {p for p in pairs if (query is None or p[1] == query) and (key is None or p[2] == key)}


def only_head(page, head: int) -> None:
    page.click("#no-heads")
    page.check(f"#head-boxes input[data-head='{head}']")


def test_page_loads_and_draws_one_line_per_pair_above_the_threshold(page, problems):
    assert problems == []
    lines = drawn(page)
    assert lines == expected(0, 0, range(HEADS))
    assert 0 < len(lines) < HEADS * 5 * 5  # the threshold hides some pairs
    assert page.text_content("#line-count") == f"{len(lines)} lines"


def test_one_head_draws_only_its_lines(page):
    only_head(page, 1)
    assert drawn(page) == expected(0, 0, [1])
    colours = set(page.eval_on_selector_all("#lines line", "lines => lines.map(l => l.getAttribute('stroke'))"))
    assert len(colours) == 1


def test_choosing_another_layer_redraws(page):
    only_head(page, 2)
    before = drawn(page)
    page.select_option("#layer-select", "1")
    after = drawn(page)
    assert before == expected(0, 0, [2]) and after == expected(0, 1, [2]) and before != after


def test_hovering_a_token_shows_only_its_lines(page):
    page.hover("#query-column .token[data-index='3']")
    assert drawn(page) == expected(0, 0, range(HEADS), query=3)
    page.hover("#key-column .token[data-index='0']")
    assert drawn(page) == expected(0, 0, range(HEADS), key=0)
    page.mouse.move(0, 0)
    assert drawn(page) == expected(0, 0, range(HEADS))


def test_threshold_control_redraws(page):
    page.fill("#threshold", "0.2")
    assert drawn(page) == expected(0, 0, range(HEADS), threshold=0.2)


def test_views_switch_tokens_and_weights(page):
    page.select_option("#view-select", label="B -> A")
    page.select_option("#layer-select", "1")
    assert page.eval_on_selector_all("#query-column .token", "ts => ts.map(t => t.textContent)") == SENTENCE_B
    assert page.eval_on_selector_all("#key-column .token", "ts => ts.map(t => t.textContent)") == SENTENCE_A
    assert drawn(page) == expected(2, 1, range(HEADS))


def test_token_markup_shows_as_literal_text_and_never_runs(page, problems):
    page.hover("#query-column .token[data-index='1']")  # the tooltips on its lines carry the token too
    assert problems == []  # no alert dialog
    assert page.text_content("#query-column .token[data-index='1']") == XSS
    assert page.text_content("#query-column .token[data-index='4']") == IMG_XSS
    assert page.locator("#attention img").count() == 0
    assert page.eval_on_selector_all("script", "scripts => scripts.length") == 2


def test_hovering_a_line_reads_out_its_weight(page):
    head, query, key = min(expected(0, 0, range(HEADS)))
    page.dispatch_event(f"#lines line[data-head='{head}'][data-query='{query}'][data-key='{key}']", "mouseover")
    weight = np.asarray(VIEWS[0].weights)[0, head, query, key]
    assert page.text_content("#line-info") == f"head {head}: {SENTENCE_A[query]} \u2192 {SENTENCE_A[key]} = {weight:g}"


COMPRESSED_KEYS = ["first (token 0: a)", "tokens 0–2: a b c", "tokens 3–5: d e f"]
COMPRESSED = AttentionView("self-attention", list("abcdef"), list("abcdef"),
                           [attention(6, 6, seed=3)[0], attention(6, 3, seed=4)[1]],
                           layer_keys={1: COMPRESSED_KEYS}, layer_kinds={0: "local", 1: "compressed"})


def test_a_compressed_layer_shows_its_slots_as_keys(browser, tmp_path, problems):
    url = write_attention_page(tmp_path / "compressed.html", [COMPRESSED]).resolve().as_uri()
    page = browser.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#lines line", state="attached")

    def keys() -> list[str]:
        return page.eval_on_selector_all("#key-column .token", "ts => ts.map(t => t.textContent)")

    def lines_of(layer: int, key=None) -> set[tuple[int, int, int]]:
        found = np.argwhere(np.asarray(COMPRESSED.weights[layer]) > 0.01)
        return {(int(h), int(q), int(k)) for h, q, k in found if key is None or k == key}

    assert page.eval_on_selector_all("#layer-select option", "os => os.map(o => o.textContent)") == [
        "0 (local)", "1 (compressed)"]
    assert keys() == list("abcdef") and drawn(page) == lines_of(0)
    page.select_option("#layer-select", "1")
    assert keys() == COMPRESSED_KEYS and drawn(page) == lines_of(1)
    page.hover("#key-column .token[data-index='2']")
    assert drawn(page) == lines_of(1, key=2)
    page.mouse.move(0, 0)
    head, query, key = min(lines_of(1))
    page.dispatch_event(f"#lines line[data-head='{head}'][data-query='{query}'][data-key='{key}']", "mouseover")
    assert f"\u2192 {COMPRESSED_KEYS[key]} = " in page.text_content("#line-info")
    page.select_option("#layer-select", "0")
    assert keys() == list("abcdef") and drawn(page) == lines_of(0)
    page.close()
    assert problems == []
