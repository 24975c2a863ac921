"""The demo page in headless Chromium (Debian's ``chromium``), driven by Playwright's Python package.

Needs ``apt-get install chromium`` and ``pip install playwright`` (no browser download: the
system Chromium is used). Skipped with a reason when either is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from unembed.inverter import Inverter
from unembed.server import create_app, serve_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from chromium import find_chromium, launch  # noqa: E402  (the one set of Chromium flags)

pytestmark = pytest.mark.browser

SENTENCE = "We will meet at the train station at nine tomorrow morning."


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright: pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = launch(pw, exe)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tiny_model_dir):
    inv = Inverter.load(str(tiny_model_dir))
    with serve_in_thread(create_app({inv.name: inv})) as url:
        yield url, inv


@pytest.fixture
def page(browser, site):
    """A fresh page on the demo; every console error or page exception is collected."""
    url, _ = site
    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    page.errors = errors
    yield page
    context.close()


def test_invert_a_sentence(page, site):
    _, inv = site
    L = inv.cfg.model.seq_len
    assert page.locator("#grid .cell").count() == L  # the empty grid, before anything runs
    page.fill("#text", SENTENCE)
    page.click("#invert")
    page.wait_for_selector('#final-text[data-state="done"]', timeout=30_000)

    expected = inv.invert(inv.encode([SENTENCE]))[0].text
    assert page.inner_text("#final-text").strip() == expected
    assert page.inner_text("#original-text").strip() == SENTENCE
    assert page.locator("#grid .cell").count() == L
    assert page.locator("#grid .cell.masked").count() == 0  # the last step leaves no mask
    assert page.get_attribute("#grid", "data-step") == str(inv.cfg.sample.num_steps)
    assert "384 dimensions" in page.inner_text("#vector-summary")
    assert "cosine" in page.inner_text("#metrics")

    slider = page.locator("#slider")
    assert slider.is_enabled() and slider.get_attribute("max") == str(inv.cfg.sample.num_steps)
    slider.fill("1")  # replay: back to the first forward pass
    assert page.get_attribute("#grid", "data-step") == "1"
    assert page.locator("#grid .cell.masked").count() > 0
    assert page.errors == []


def test_embed_then_invert_a_pasted_vector(page, site):
    _, inv = site
    page.click("#examples button >> nth=0")
    page.click("#embed")
    page.wait_for_selector("#vector-summary:has-text('384 dimensions')")
    vec = np.random.default_rng(1).standard_normal(inv.dim)
    page.click("#vector-panel summary")
    page.fill("#vector-input", json.dumps(vec.round(6).tolist()))
    page.select_option("#strategy", "two-stage")
    page.fill("#steps", "4")
    page.click("#invert-vector")
    page.wait_for_selector('#final-text[data-state="done"]', timeout=30_000)
    expected = inv.invert(vec.round(6), "two-stage", 4)[0].text
    assert page.inner_text("#final-text").strip() == (expected or "(empty)")
    assert page.get_attribute("#grid", "data-step") == "4"
    assert page.errors == []


def test_a_bad_vector_is_explained_on_the_page(page, site):
    page.click("#vector-panel summary")
    page.fill("#vector-input", "[1, 2, 3]")
    page.click("#invert-vector")
    status = page.locator("#vector-status")  # beside the paste box, not at the top of the page
    assert "this model needs 384" in status.inner_text()
    assert "error" in (status.get_attribute("class") or "")
    assert page.errors == []


def test_api_docs_render_offline(browser, site):
    """Swagger UI at /docs draws every route from local assets; any request off the server fails."""
    url, _ = site
    context = browser.new_context()
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url.rstrip("/") + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = {p.replace("\u200b", "").strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/api/health", "/api/models", "/api/encode", "/api/invert"} <= paths
    assert "unembed" in page.locator(".info .title").inner_text()
    assert outside == [] and errors == []
    context.close()


def test_the_result_panel_credits_words_out_of_order_and_explains_every_colour(page, site):
    """The issue's example: 'today, a lovely of of the weather.' recovers 4 of the 5 words; the old
    panel struck 'lovely' and 'today' as lost because they came out of order."""
    _, inv = site
    page.fill("#text", "The weather is lovely today.")
    page.click("#invert")
    page.wait_for_selector('#final-text[data-state="done"]', timeout=30_000)
    label = page.inner_text("#step-label")
    assert label.startswith(f"Step {inv.cfg.sample.num_steps} of {inv.cfg.sample.num_steps} · t = 0 ·"), label
    assert "Words recovered:" in page.inner_text("#word-summary")
    # The decoder's EOS and padding are labelled as such, wherever the (random) model put them.
    ids = page.evaluate("state.steps[state.steps.length - 1].ids")
    cells = page.locator("#grid .cell")
    eos = inv.cfg.model.eos_id
    first_eos = ids.index(eos) if eos in ids else -1
    for i, tok in enumerate(ids):
        text = cells.nth(i).locator(".tok").inner_text()
        if i == first_eos:
            assert text == "END" and "eos" in cells.nth(i).get_attribute("class")
        elif tok in (eos, inv.cfg.model.pad_id):
            assert text == "pad" and "pad" in cells.nth(i).get_attribute("class")
        else:
            assert text not in ("END", "pad", "[SEP]", "[PAD]")
    # Render a known reconstruction through the page's own code.
    page.evaluate(
        """() => { state.original = "The weather is lovely today.";
                   state.final = {...state.final, text: "today, a lovely of of the weather."}; showFinal(); }"""
    )
    cls = page.eval_on_selector_all("#original-text span", "els => els.map(e => e.className)")
    assert cls == ["same", "same", "del", "same", "same"]  # The weather [is] lovely today
    recon = page.eval_on_selector_all("#final-text span", "els => els.map(e => e.className)")
    assert recon == ["same", "ins", "same", "ins", "ins", "same", "same"]
    order = page.eval_on_selector_all("#order-text span", "els => els.map(e => e.className)")
    assert order == ["same", "same", "del", "moved", "moved"]
    assert "4 of 5 anywhere" in page.inner_text("#word-summary")
    assert "2 of 5 in the original order" in page.inner_text("#word-summary")
    legend = page.inner_text("#result-legend") + page.inner_text("#denoise-panel .legend")
    for words in ("recovered", "out of order", "not recovered", "not in the original", "end of sentence", "padding"):
        assert words in legend
    used = set(cls + recon + order)
    shown = set(page.eval_on_selector_all("#result-legend .word-swatch", "els => els.map(e => e.classList[1])"))
    assert used <= shown  # every colour on the panel has a legend entry
    assert page.errors == []


def test_a_fractional_step_count_is_refused_on_the_page(page):
    page.fill("#text", "The weather is lovely today.")
    page.fill("#steps", "2.5")
    page.click("#invert")
    status = page.locator("#status")
    assert "whole number" in status.inner_text() and "error" in (status.get_attribute("class") or "")
    assert page.errors == []


def test_the_known_value_panel_ranks_pasted_candidates_and_clears_when_the_text_changes(
    page, site, tmp_path, monkeypatch
):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path))
    page.click("#identify")
    assert "Embed or invert a sentence first" in page.inner_text("#identify-status")
    page.fill("#text", "Patient Joan Banks reports chest pain.")
    page.fill("#candidates", "Peter Olsen\nJoan Banks\n\nMaria Garcia\n")
    page.click("#identify")
    page.wait_for_selector("#identify-table:not([hidden])")
    rows = page.locator("#identify-table tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("td").nth(0).inner_text() == "Joan Banks"
    assert rows.nth(0).locator("td").nth(1).inner_text() == "person"
    assert "3 candidates from pasted list" in page.inner_text("#identify-status")
    page.fill("#text", "Maria Garcia moved to Denver.")  # a new sentence: the old ranking goes
    assert page.locator("#identify-table").is_hidden() and page.inner_text("#identify-status") == ""
    page.click("#identify")
    page.wait_for_selector("#identify-table:not([hidden])")
    assert page.locator("#identify-table tbody tr").nth(0).locator("td").nth(0).inner_text() == "Maria Garcia"
    page.fill("#candidates", "x" * 301)
    page.click("#identify")
    page.wait_for_selector("#identify-status.error")
    assert "at most 300 characters" in page.inner_text("#identify-status")
    assert page.errors == []


def test_editing_the_input_clears_every_panel_that_described_the_old_one(page, site):
    page.fill("#text", SENTENCE)
    page.click("#invert")
    page.wait_for_selector("#final-text[data-state=done]", timeout=60_000)
    assert page.inner_text("#final-text").strip() and "dimensions" in page.inner_text("#vector-summary")
    page.fill("#text", "A different sentence now.")
    assert page.inner_text("#final-text") == "" and page.inner_text("#original-text") == ""
    assert page.inner_text("#vector-summary") == "Embed a sentence to see its vector."
    assert page.locator("#grid .cell").count() == 0 and page.inner_text("#metrics") == ""
    page.click("#invert")
    page.wait_for_selector("#final-text[data-state=done]", timeout=60_000)
    page.click("#vector-panel summary")
    page.fill("#vector-input", "[0.1, 0.2]")  # a new pasted vector: the old result goes too
    assert page.inner_text("#final-text") == "" and page.locator("#grid .cell").count() == 0
    assert page.errors == []
