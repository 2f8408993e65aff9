"""The Space in a real browser (Debian chromium driven by Playwright): render, click-to-focus, a rating
session end to end, the leaderboard. Screenshots are kept under ``artifacts/browser/`` (``BOKEH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
STUDY_ID = "browser-study"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install_system_deps.sh installs it as root)")
    pytest.importorskip("playwright.sync_api")
    data = tmp_path_factory.mktemp("browser_space")
    previous = os.environ.get("BOKEH_DATA_DIR")
    os.environ["BOKEH_DATA_DIR"] = str(data)
    from space.app import build_app
    from space.config import EXAMPLES_DIR, SpaceSettings
    from user_study.config import StudyConfig
    from user_study.testing import make_fake_run
    from user_study.ui import get_service

    db_url = f"sqlite:///{data / 'study.db'}"
    service = get_service(db_url)
    run = make_fake_run(data / "run", methods=("lens", "gaussian"), scenes=("1", "2"), size=(96, 64))
    config = StudyConfig(
        title="Browser test study",
        items_per_session=2,
        min_view_ms=300,
        gold_per_session=0,
        trap_per_session=0,
        hidden_ref_per_session=0,
    )
    service.create_study(run, config, study_id=STUDY_ID, n_gold=0, n_trap=0, n_hidden_ref=0)
    photo = data / "photo.png"
    Image.open(EXAMPLES_DIR / "chelsea.png").resize((300, 200)).save(photo)
    settings = SpaceSettings(
        depth_model=str(data / "no-depth-model"),
        results_dir=data / "results",
        study_db=db_url,
        organizer_token="organizer-secret",
        max_render_side=640,
    )
    demo = build_app(settings)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "photo": photo, "service": service}
    finally:
        demo.close()
        if previous is None:
            os.environ.pop("BOKEH_DATA_DIR", None)
        else:
            os.environ["BOKEH_DATA_DIR"] = previous


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    from playwright.sync_api import sync_playwright

    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"pw-home-{os.getpid()}"
    home.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)},
        )
        yield chromium
        chromium.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _result_src(page) -> str:
    return page.locator("#result img").first.get_attribute("src") or ""


def _click_image_pixel(page, selector: str, x: int, y: int) -> None:
    image = page.locator(f"{selector} img").first
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1], 1.0)
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    page.mouse.click(left + x * scale, top + y * scale)


def test_render_and_click_to_focus(server: dict, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server["url"])
    page.locator("#photo input[type=file]").set_input_files(str(server["photo"]))
    page.wait_for_function("() => { const i = document.querySelector('#photo img'); return i && i.naturalWidth > 0; }")
    page.locator("#render").click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#result img'); return i && i.naturalWidth > 0; }", timeout=60_000
    )
    assert "APPROXIMATE" in page.locator("#render-info").inner_text()
    first = _result_src(page)
    _shot(page, "01_rendered")

    _click_image_pixel(page, "#photo", 150, 100)
    page.wait_for_function("() => document.querySelector('#focus_x input').value === '150'", timeout=20_000)
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('#result img'); return i && i.src !== {first!r}; }}", timeout=60_000
    )
    assert "Focus at pixel" in page.locator("#render-info").inner_text()
    _shot(page, "02_refocused")
    page.close()


def test_leaderboard_tab_shows_the_paper_rows(server: dict, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server["url"])
    page.get_by_role("tab", name="Leaderboard").click()
    table = page.locator("#leaderboard-table")
    table.wait_for()
    text = table.inner_text()
    assert "PyNET" in text and "reported in paper" in text and "23.28" in text
    _shot(page, "03_leaderboard")
    page.close()


def test_rating_session_end_to_end(server: dict, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server['url']}?study={STUDY_ID}&rater=browser-rater-1")
    page.wait_for_url("**/rate?study=*", timeout=20_000)  # the rater link opens the dedicated rater page
    page.get_by_role("button", name="Start rating").click()
    for number in (1, 2):
        page.locator("#progress").filter(has_text=f"Item {number} of 2").wait_for(timeout=20_000)
        time.sleep(0.4)  # the study's minimum viewing time (300 ms)
        page.locator("#scores button[data-key='2']").click()
        _shot(page, f"04_rating_item_{number}")
        page.get_by_role("button", name="Submit").click()
    page.get_by_text("completion code", exact=False).first.wait_for(timeout=20_000)
    _shot(page, "05_rating_done")
    ratings = server["service"].ratings_frame(STUDY_ID)
    assert len(ratings) == 2
    assert set(ratings["score"]) == {2}
    page.close()
