"""What a visitor meets in the Space, in a real browser at 1366x768 and 390x844 (issue 23, items 1-9).

One app server for the module (results folder, a study, no portal dataset); each test loads a page once and checks
several things on it. Screenshots go to ``artifacts/browser/visitor_*`` (``BOKEH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from _app_server import browser_space_settings, serving
from _browser import browser_home, chromium_browser, open_tab, require_chromium
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}
STUDY_ID = "visitor-study"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    data = tmp_path_factory.mktemp("visitor_space")
    mp = pytest.MonkeyPatch()
    mp.setenv("BOKEH_DATA_DIR", str(data))
    mp.setenv("BOKEH_RATER_SECRET", "visitor-secret")
    for name in ("BOKEH_PORTAL_DATASET", "SPACE_ID", "BOKEH_FETCH_MODELS", "BOKEH_PYNET_WEIGHTS"):
        mp.delenv(name, raising=False)
    from evaluation.run import main as evaluate
    from space.app import build_app
    from user_study.config import StudyConfig
    from user_study.service import get_service
    from user_study.testing import make_fake_run

    results = data / "results"
    args = ["--synthetic-scenes", "2", "--synthetic-size", "128x96", "--warmup", "1", "--methods", "gaussian"]
    assert evaluate([*args, "--out", str(results)]) == 0  # a measured run: table and charts, no MOS yet
    db_url = f"sqlite:///{data / 'study.db'}"
    service = get_service(db_url)
    run = make_fake_run(data / "run", methods=("lens", "gaussian"), scenes=("1", "2"), size=(96, 64))
    config = StudyConfig(
        title="Visitor study",
        items_per_session=2,
        min_view_ms=0,
        gold_per_session=0,
        trap_per_session=0,
        hidden_ref_per_session=0,
    )
    service.create_study(run, config, study_id=STUDY_ID, n_gold=0, n_trap=0, n_hidden_ref=0)
    settings = browser_space_settings(data)
    bad = data / "bad"
    bad.mkdir()
    Image.open(ROOT / "space" / "examples" / "chelsea.png").convert("RGB").save(bad / "whole.jpg", quality=90)
    raw = (bad / "whole.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(raw[: len(raw) // 2])  # a truncated JPEG: its header reads fine
    (bad / "notes.png").write_bytes(b"these are notes, not a picture")
    Image.new("RGB", (6000, 4500), (90, 120, 150)).save(bad / "huge.png")  # 27 MP in a small file
    try:
        with serving(build_app(settings)) as url:
            yield {"url": url, "results": results, "bad": bad}
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    with chromium_browser(browser_home("visitor")) as chromium:
        yield chromium


def _shot(page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"visitor_{name}.png"), full_page=full_page)


def _open(browser, server: dict, size: str, path: str = ""):
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(server["url"] + path)
    return page


def _in_view(page, selector: str, whole: bool = False) -> bool:
    """Whether the element's top (its first 40 px, or all of it with ``whole``) is on screen."""
    box = page.locator(selector).first.bounding_box()
    view = page.viewport_size
    height = box["height"] if whole else min(box["height"], 40)
    return box is not None and box["y"] >= -1 and box["y"] + height <= view["height"] + 1


def _wait_text(page, selector: str, text: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text], timeout=timeout
    )


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_photo_refusals_examples_render_and_download(server: dict, browser, size: str, caplog) -> None:
    """Items 2, 3, 7 and 9 (quotes, download name): refusals show at the upload, an example clears them, the
    result is in view after Render, and the download is named after the photo and the method."""
    page = _open(browser, server, size)
    page.locator("#photo").wait_for()
    # Render with no photo: the message is plain text, not a quoted Python string
    render = page.locator("#render")
    render.scroll_into_view_if_needed()
    render.click()
    _wait_text(page, "#render-message", "Upload a photo")
    first = page.locator("#render-message").inner_text()
    assert "'" not in first and "previous result" not in first, first  # there is no result to keep yet
    page.evaluate("() => window.scrollTo(0, 0)")
    # item 10: a refused upload is one log line (no traceback, no Python warning printed beside it)
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        caplog.clear()
        page.locator("#photo input[type=file]").set_input_files(str(server["bad"] / "cut.jpg"))
        _wait_text(page, "#photo-note", "could not be decoded")
        time.sleep(0.5)
        lines = [r for r in caplog.records if "cut.jpg" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in caplog.records]
    assert not [w for w in printed if "cut.jpg" in str(w.message)], [str(w.message) for w in printed]
    assert _in_view(page, "#photo-note"), "the refusal is not where the photo was uploaded"
    page.wait_for_function("() => !document.querySelector('#photo img')", timeout=20_000)
    _shot(page, f"{size}_01_truncated_refused")
    page.locator("#photo input[type=file]").set_input_files(str(server["bad"] / "notes.png"))
    _wait_text(page, "#photo-note", "notes.png is not an image")
    assert _in_view(page, "#photo-note")
    page.locator("#photo input[type=file]").set_input_files(str(server["bad"] / "huge.png"))
    _wait_text(page, "#photo-note", "huge.png is 27 MP")
    assert _in_view(page, "#photo-note") and "27 MP" in page.locator("#render-message").inner_text()
    # picking an example clears the stale warning
    example = page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").first
    example.scroll_into_view_if_needed()
    example.click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#photo img'); return i && i.naturalWidth > 0; }", timeout=30_000
    )
    page.wait_for_function("() => !(document.querySelector('#photo-note')?.innerText || '').trim()", timeout=10_000)
    assert "⚠" not in page.locator("#render-message").inner_text()
    # tapping Render (below the result on a phone), scrolled to the top of the screen as a visitor who went on
    # to the controls has it, brings the whole result into view
    render.evaluate("el => el.scrollIntoView({block: 'start'})")
    render.click()
    _wait_text(page, "#render-message", "✓", timeout=120_000)
    time.sleep(0.5)
    assert _in_view(page, "#result", whole=True), "the result is not in view after Render"
    _shot(page, f"{size}_02_after_render")
    with page.expect_download(timeout=60_000) as info:
        page.locator("#download").click()
    name = info.value.suggested_filename
    assert name.endswith("_lens.png") and name.split("_lens")[0] in {
        p.stem for p in (ROOT / "space/examples").iterdir()
    }
    page.close()


_PLOT_BOXES = """(sel) => {
  const root = document.querySelector(sel);
  const plot = root.querySelector('.js-plotly-plot') || root;
  const c = plot.getBoundingClientRect();
  const boxes = (q) => [...plot.querySelectorAll(q)].map((e) => {
    const r = e.getBoundingClientRect();
    return {t: e.textContent, l: r.left, r: r.right, top: r.top, b: r.bottom};
  });
  return {c: {l: c.left, r: c.right, top: c.top, b: c.bottom}, titles: boxes('.gtitle'),
          subtitles: boxes('.annotation-text'), axes: boxes('.xtitle, .ytitle'),
          xticks: boxes('.xtick text').filter((b) => b.t.trim())};
}"""

_SPLIT_WORDS = """(sel) => {
  // header words drawn on more than one line ("LPIP / S")
  const split = [];
  for (const th of document.querySelectorAll(sel + ' th')) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const re = /\\S+/g;
      for (let m = re.exec(node.data); m; m = re.exec(node.data)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size > 1) split.push(m[0]);
      }
    }
  }
  return split;
}"""


def _write_mos(results: Path, with_mos: bool) -> None:
    from evaluation import leaderboard

    if with_mos:  # what `python -m user_study aggregate ... --out <results>` leaves
        row = {"method": "gaussian", "mos": 1.5, "ci_low": 1.2, "ci_high": 1.8, "rank": 1, "sig_rank": 1}
        pd.DataFrame([{**row, "n_ratings": 40}]).to_csv(results / "mos.csv", index=False)
    else:
        (results / "mos.csv").unlink(missing_ok=True)
    leaderboard.rebuild_tables(results)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_leaderboard_is_read_at_each_load_and_readable(server: dict, browser, size: str) -> None:
    """Items 1, 4 and 5: results written after start show on the next load; key columns, headers, charts and the
    log axis are readable at both sizes; no server path."""
    _write_mos(server["results"], with_mos=False)
    page = _open(browser, server, size)
    open_tab(page, "Leaderboard")
    table = page.locator("#leaderboard-table")
    table.wait_for()
    _wait_text(page, "#leaderboard-table", "gaussian")
    assert "1.50" not in table.inner_text()
    _write_mos(server["results"], with_mos=True)  # the study's MOS arrives while the server runs
    page.reload()
    open_tab(page, "Leaderboard")
    _wait_text(page, "#leaderboard-table", "1.50")  # no Refresh pressed
    text = page.locator("#leaderboard-note").inner_text() + page.locator("#leaderboard-banner").inner_text()
    assert str(server["results"]) not in text and "/tmp" not in text
    page.wait_for_function("() => document.querySelectorAll('#leaderboard-plot-2 .gtitle').length > 0")
    time.sleep(1.0)
    box = page.locator("#leaderboard-table").bounding_box()
    width = min(page.viewport_size["width"], box["x"] + box["width"])  # what the table shows without scrolling
    headers = page.evaluate(
        "() => [...document.querySelectorAll('#leaderboard-table th')].map((th) => {"
        "const r = th.getBoundingClientRect(); return [th.innerText.trim(), r.right];})"
    )
    for key in ("Method", "PSNR", "SSIM", "MOS"):
        right = [r for name, r in headers if name.startswith(key)]
        assert right and right[0] <= width + 1, f"{key} is off screen: {headers}"
    assert page.locator("#leaderboard-scroll-hint").is_visible() == (size == "phone")
    assert page.evaluate(_SPLIT_WORDS, "#leaderboard-table") == []
    for i in range(3):
        boxes = page.evaluate(_PLOT_BOXES, f"#leaderboard-plot-{i}")
        frame = boxes["c"]
        for label in boxes["titles"] + boxes["subtitles"] + boxes["axes"]:
            inside = label["l"] >= frame["l"] - 1 and label["r"] <= frame["r"] + 1
            assert inside and label["top"] >= frame["top"] - 1, f"plot {i}: {label['t']!r} is cut: {boxes}"
        titles = sorted(boxes["subtitles"], key=lambda b: b["l"])
        for left, right in zip(titles, titles[1:], strict=False):
            assert left["r"] <= right["l"], f"plot {i}: subplot titles collide: {left['t']!r} {right['t']!r}"
    ticks = page.evaluate(_PLOT_BOXES, "#leaderboard-plot-0")["xticks"]
    assert 2 <= len(ticks) <= 6, f"log axis ticks: {[t['t'] for t in ticks]}"
    _shot(page, f"{size}_03_leaderboard", full_page=True)
    page.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_banner_method_note_status_portal_and_study(server: dict, browser, size: str) -> None:
    """Items 5, 6, 8 and 9: the banner follows a failed fetch, no server paths or recipes, the closed portal says
    so first, the Study panels show messages instead of Error badges and empty tables."""
    from space import fetching

    fetching._set("PyNET-Bokeh weights", state="failed", detail="HTTP 404 for /root/.cache/x/PyNET.zip")
    try:
        page = _open(browser, server, size)
        banner = page.locator("#status-banner")
        _wait_text(page, "#status-banner", "could not be downloaded")
        assert "being downloaded" not in banner.inner_text()
        # the method note: one short line, no path, no command
        page.locator("#method input").click()
        page.get_by_role("option", name="pynet (unavailable)").click()
        _wait_text(page, "#method-note", "unavailable here")
        note = page.locator("#method-note").inner_text()
        assert "/root" not in note and "python -m" not in note and len(note) < 200, note
        _shot(page, f"{size}_04_banner_note")
        open_tab(page, "Status")
        _wait_text(page, "#status-cards", "PyNET")
        cards = page.locator("#status-cards").inner_text()
        assert "/root" not in cards and "/tmp" not in cards, cards
        open_tab(page, "Portal")
        closed = page.locator("#portal-closed")
        closed.wait_for()
        assert "no dataset" in closed.inner_text()
        assert closed.bounding_box()["y"] < page.locator("#portal-method").bounding_box()["y"]
        assert page.locator("#portal-send").is_disabled()
        assert page.locator("#portal-method textarea, #portal-method input").first.is_disabled()
        assert "python -m" not in page.locator("#portal-closed").inner_text()
        _shot(page, f"{size}_05_portal")
        open_tab(page, "Study")
        page.locator("#study-link-id textarea, #study-link-id input").first.fill(STUDY_ID)
        page.get_by_role("button", name="Rater link").click()
        _wait_text(page, "#study-link", "Visitor study")
        link = page.locator("#study-link a").first.get_attribute("href")
        assert link.startswith(server["url"].rstrip("/") + "/rate?") and "RATER_ID" not in link
        page.locator("#study-link-id textarea, #study-link-id input").first.fill("<img src=x>")
        page.get_by_role("button", name="Rater link").click()
        _wait_text(page, "#study-link", "No study")
        assert "<img src=x>" in page.locator("#study-link").inner_text()
        page.get_by_text("Organizer", exact=True).click()
        token = page.locator("#study-org-token input").first
        study = page.locator("#study-org-id textarea, #study-org-id input").first
        token.fill("wrong")
        study.fill(STUDY_ID)
        page.get_by_role("button", name="Status", exact=True).click()
        _wait_text(page, "#study-summary", "Wrong organizer token")
        token.fill("organizer-secret")
        study.fill("nope")
        page.get_by_role("button", name="Results", exact=True).click()
        _wait_text(page, "#study-summary", "unknown study")
        summary = page.locator("#study-summary").inner_text()
        assert "'" not in summary and "[" not in summary, summary
        study.fill(STUDY_ID)
        page.get_by_role("button", name="Results", exact=True).click()
        _wait_text(page, "#study-summary", "No ratings")
        assert not page.locator("#study-chart").is_visible()  # no empty chart with axes -1..6
        page.get_by_role("button", name="Status", exact=True).click()
        _wait_text(page, "#study-summary", "ratings from")
        time.sleep(0.5)
        tab_text = page.locator("#study-summary").locator("xpath=ancestor::div[@role='tabpanel'][1]").inner_text()
        assert "Error" not in tab_text, tab_text
        headers = page.evaluate("() => [...document.querySelectorAll('th')].map((t) => t.innerText.trim())")
        assert not {"1", "2", "3"} & set(headers), headers
        _shot(page, f"{size}_06_study", full_page=True)
        page.close()
    finally:
        fetching._STATES.pop("PyNET-Bokeh weights", None)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_compare_table_and_captions(server: dict, browser, size: str) -> None:
    """Items 5 and 9: the runtime table has named columns and no server path; captions are not cut at 390 px."""
    page = _open(browser, server, size)
    example = page.locator(".gallery-item").first
    example.scroll_into_view_if_needed()
    example.click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#photo img'); return i && i.naturalWidth > 0; }", timeout=30_000
    )
    open_tab(page, "Compare")
    headers = page.evaluate("() => [...document.querySelectorAll('#compare-table th')].map((t) => t.innerText.trim())")
    assert "method" in headers and "1" not in headers, headers
    page.locator("#compare").click()
    page.wait_for_function("() => document.querySelectorAll('#compare-gallery img').length >= 5", timeout=120_000)
    _wait_text(page, "#compare-table", "unavailable")
    table = page.locator("#compare-table").inner_text()
    assert "/root" not in table and "python -m" not in table, table
    time.sleep(0.5)
    cut = page.evaluate(
        "() => [...document.querySelectorAll('#compare-gallery .caption-label')]"
        ".filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.innerText)"
    )
    assert not cut, f"captions cut: {cut}"
    covering = page.evaluate(
        "() => [...document.querySelectorAll('#compare-gallery .caption-label')].filter((e) => {"
        "const item = e.closest('button, .thumbnail-item') || e.parentElement;"
        "return e.getBoundingClientRect().height > 0.5 * item.getBoundingClientRect().height;})"
        ".map((e) => e.innerText)"
    )
    assert not covering, f"captions cover their picture: {covering}"
    _shot(page, f"{size}_07_compare", full_page=True)
    page.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_rater_page_says_it_resumes_and_thanks_once(server: dict, browser, size: str) -> None:
    """Item 9: "Start rating" says that it resumes; the end screen says "Thank you!" once."""
    page = _open(browser, server, size, f"rate?study={STUDY_ID}&rater=visitor-{size}")
    start = page.get_by_role("button", name="Start rating")
    start.wait_for()
    assert "continue where you left off" in page.locator("#start").inner_text()
    start.click()
    for number in (1, 2):
        page.locator("#progress").filter(has_text=f"Item {number} of 2").wait_for(timeout=20_000)
        page.locator("#scores button[data-key='2']").click()
        page.get_by_role("button", name="Submit").click()
    page.locator("#end-title").filter(has_text="Thank you").wait_for(timeout=20_000)
    assert page.locator("#end").inner_text().lower().count("thank you") == 1
    _shot(page, f"{size}_08_rater_end")
    page.close()
