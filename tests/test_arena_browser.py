"""The Arena tab in a real browser at 1366x768 and 390x844: upload -> click the subject -> A and B -> vote ->
names -> next pair; a vote before the images are on screen is refused in the page; a double click counts once;
a file that is not an image is refused."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._app_server import browser_space_settings, example_photo, serving
from tests._browser import browser_home, chromium_browser, require_chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}
MIN_LOOK_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    data = tmp_path_factory.mktemp("arena_space")
    saved = {k: os.environ.get(k) for k in ("BOKEH_DATA_DIR", "BOKEH_ARENA_MIN_LOOK_S", "BOKEH_RATER_SECRET")}
    os.environ.update(BOKEH_DATA_DIR=str(data), BOKEH_ARENA_MIN_LOOK_S=str(MIN_LOOK_S), BOKEH_RATER_SECRET="t")
    from space.app import build_app
    from user_study.arena.service import get_arena_service

    db_url = f"sqlite:///{data / 'study.db'}"
    photo = example_photo(data)
    (data / "notes.txt").write_text("not a photo")
    (data / "notes.png").write_text("not a photo either, despite its name")
    settings = browser_space_settings(data)
    try:
        with serving(build_app(settings)) as url:
            yield {"url": url, "photo": photo, "text": data / "notes.txt", "service": get_arena_service(db_url)}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    with chromium_browser(browser_home("arena")) as chromium:
        yield chromium


def _shot(page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"arena_{name}.png"), full_page=full_page)


def _open_arena(browser, server: dict, size: str):
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server["url"])
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_selector("#arena-photo input[type=file]", state="attached", timeout=30_000)
    return page


def _upload(page, path: Path) -> None:
    page.locator("#arena-photo input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "() => { const i = document.querySelector('#arena-photo img'); return i && i.naturalWidth > 0; }",
        timeout=60_000,
    )


def _click_photo(page, x: int, y: int) -> None:
    image = page.locator("#arena-photo img").first
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1], 1.0)
    page.mouse.click(
        box["x"] + (box["width"] - natural[0] * scale) / 2 + x * scale,
        box["y"] + (box["height"] - natural[1] * scale) / 2 + y * scale,
    )


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def _wait_text(page, selector: str, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text], timeout=timeout
    )


def _wait_pair(page) -> tuple[str, str]:
    page.wait_for_function(
        """() => ['#arena-a', '#arena-b'].every(s => {
            const i = document.querySelector(s + ' img'); return i && i.complete && i.naturalWidth > 0; })""",
        timeout=180_000,
    )
    return (
        page.locator("#arena-a img").first.get_attribute("src") or "",
        page.locator("#arena-b img").first.get_attribute("src") or "",
    )


def _battles(service) -> int:
    from sqlalchemy import func, select

    from user_study.arena.storage import ArenaBattle

    with service.Session() as s:
        return int(s.scalar(select(func.count()).select_from(ArenaBattle)))


def _in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    view = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= view["height"] + 1


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_upload_click_vote_names_next(server: dict, browser, size: str) -> None:
    service = server["service"]
    before = len(service.votes_frame())
    page = _open_arena(browser, server, size)
    _upload(page, server["photo"])
    _click_photo(page, 150, 100)
    page.wait_for_function(  # the click was taken: the pair is rendering (or already shown)
        "() => /Rendering|Which one/.test(document.querySelector('#arena-message')?.innerText)", timeout=60_000
    )
    page.locator("#arena-vote-a").click()  # too early: the pair is not on screen (or not long enough)
    page.wait_for_function(
        "() => /Wait until both images|a little longer/.test(document.querySelector('#arena-message')?.innerText)",
        timeout=60_000,
    )
    refused_text = _text(page, "#arena-message")
    _shot(page, f"{size}_1_refused_early")
    _wait_pair(page)
    if size == "desktop":
        # A and B and the vote buttons on the first screen of a laptop, without scrolling
        page.evaluate("window.scrollTo(0, 0)")
        for selector in ("#arena-a img", "#arena-b img", "#arena-vote-a", "#arena-vote-b"):
            assert _in_viewport(page, selector), selector
    else:
        for selector in ("#arena-a img", "#arena-b img"):  # both reachable by scrolling, each fully visible
            page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'center'})")
            assert _in_viewport(page, selector), selector
    assert _text(page, "#arena-reveal").strip() == ""  # no names before the vote
    _shot(page, f"{size}_2_pair")
    page.wait_for_timeout(MIN_LOOK_S * 1000 + 300)
    page.locator("#arena-vote-a").dblclick()  # a double click counts once
    _wait_text(page, "#arena-reveal", "A was")
    reveal = _text(page, "#arena-reveal")
    methods = service.votes_frame().iloc[-1][["method_a", "method_b"]].tolist()
    assert f"A was {methods[0]}" in reveal and f"B was {methods[1]}" in reveal
    assert "Wait until both images" in refused_text or "a little longer" in refused_text
    assert len(service.votes_frame()) == before + 1
    page.locator("#arena-reveal").scroll_into_view_if_needed()
    _shot(page, f"{size}_3_names")
    battles = _battles(service)
    page.locator("#arena-next").click()
    # a new battle is drawn and shown (its images may equal the last ones: the same pair can come again)
    deadline = time.monotonic() + 120
    while _battles(service) == battles and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _battles(service) == battles + 1
    _wait_pair(page)
    _wait_text(page, "#arena-message", "Which one")
    assert _text(page, "#arena-reveal").strip() == ""
    _shot(page, f"{size}_4_next")
    page.close()


def test_a_file_that_is_not_an_image_is_refused(server: dict, browser) -> None:
    page = _open_arena(browser, server, "desktop")
    page.locator("#arena-photo input[type=file]").set_input_files(str(server["text"]))
    page.wait_for_function("() => /Invalid file type|not an image/.test(document.body.innerText)", timeout=30_000)
    _shot(page, "desktop_5_not_an_image")
    assert page.locator("#arena-a img").count() == 0
    # a file named .png that is not an image passes the picker; the tab names the problem in the page
    page.locator("#arena-photo input[type=file]").set_input_files(str(server["text"].with_suffix(".png")))
    _wait_text(page, "#arena-message", "not an image")
    _shot(page, "desktop_6_broken_png")
    assert page.locator("#arena-a img").count() == 0
    page.close()


def test_the_space_serves_the_arena_api(server: dict) -> None:
    import httpx

    r = httpx.get(server["url"] + "arena-api/v1/leaderboard", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert {"rows", "votes", "min_votes_for_rank"} <= set(r.json())
    r = httpx.post(server["url"] + "arena-api/v1/votes", json={"battle": "0" * 32, "choice": "a"}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (404, "unknown_battle")


def test_organizer_view_needs_the_token_and_lists_pairs_and_visitors(server: dict, browser) -> None:
    page = _open_arena(browser, server, "desktop")
    page.get_by_text("Organizer: votes per pair and per visitor").click()
    page.locator("#arena-organizer-token input").fill("wrong")
    page.locator("#arena-organizer-show").click()
    page.wait_for_function("() => document.body.innerText.includes('Wrong organizer token')", timeout=30_000)
    page.locator("#arena-organizer-token input").fill("organizer-secret")
    page.locator("#arena-organizer-show").click()
    page.wait_for_function("() => /\\d+ vote\\(s\\); \\d+ refused/.test(document.body.innerText)", timeout=30_000)
    _shot(page, "desktop_7_organizer", full_page=True)
    # the public board of the tab, computed from the stored votes when the page loaded
    page.get_by_text("Arena leaderboard (from the stored votes)").click()
    page.wait_for_function("() => /Strength/.test(document.querySelector('#arena-board')?.innerText)", timeout=30_000)
    page.wait_for_selector("#arena-heatmap .js-plotly-plot", timeout=30_000)
    assert "vote(s)" in _text(page, "#arena-board-note")
    page.locator("#arena-heatmap").scroll_into_view_if_needed()
    _shot(page, "desktop_8_board", full_page=True)
    page.close()
