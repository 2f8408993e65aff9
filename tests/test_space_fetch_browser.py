"""A simulated Space (``SPACE_ID`` set) fetches PyNET in the background while it serves; the browser sees the Status
cards progress and then renders with PyNET, without a restart.

``python app.py`` runs in a subprocess with every cache in a temporary folder and ``BOKEH_PYNET_URL`` pointing at
a local server (127.0.0.1) that serves a zip with a full-size, random-weight PyNET checkpoint, slowly enough to
watch. Screenshots at 1366x768 and 390x844 go to ``artifacts/browser/`` (``BOKEH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _app_server import free_port
from _browser import browser_home, chromium_browser, open_tab, require_chromium
from _local_server import LocalServer
from _pynet_archive import build_pynet_zip
from _tiny_models import save_tiny_dpt
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "BOKEH_OFFLINE")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("space_fetch")
    data, _ = build_pynet_zip()
    depth = save_tiny_dpt(tmp / "tiny-dpt")  # a depth model already there (preload_from_hub on a real Space)
    port = free_port()
    with LocalServer() as files:
        url = files.add("/PyNET_Bokeh_pretrained.zip", data, seconds=8.0)
        env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and k != "BOKEH_PYNET_WEIGHTS"}
        env.update(
            SPACE_ID="someone/pynet-bokeh",
            BOKEH_PYNET_URL=url,
            BOKEH_CACHE=str(tmp / "cache"),
            BOKEH_DEPTH_MODEL=str(depth),
            BOKEH_DEPTH_CHOICES="none",  # no other depth model to fetch: nothing here may reach the internet
            BOKEH_DATA_DIR=str(tmp / "data"),
            BOKEH_RESULTS_DIR=str(tmp / "results"),
            HF_HOME=str(tmp / "hf"),
            TORCH_HOME=str(tmp / "torch"),
            XDG_CACHE_HOME=str(tmp / "xdg"),
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(port),
            GRADIO_ANALYTICS_ENABLED="False",
            BOKEH_MAX_RENDER_SIDE="640",
            PYTHONPATH=str(ROOT),
        )
        log = open(tmp / "app.log", "w")  # noqa: SIM115 - closed below
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(base, timeout=2).close()
                    break
                except OSError:
                    if app.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((tmp / "app.log").read_text()[-3000:]) from None
                    time.sleep(0.5)
            photo = tmp / "photo.png"
            Image.open(ROOT / "space" / "examples" / "chelsea.png").resize((300, 200)).save(photo)
            yield {"url": base, "photo": photo, "cache": tmp / "cache", "files": files, "log": tmp / "app.log"}
        finally:
            app.terminate()
            app.wait(timeout=30)
            log.close()


@pytest.fixture(scope="module")
def browser(space: dict) -> Iterator:
    with chromium_browser(browser_home("fetch")) as chromium:
        yield chromium


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _pynet_card(page):
    return page.locator('#status-cards .card[data-component="PyNET-Bokeh weights"]')


def test_space_fetches_pynet_in_the_background_and_uses_it_without_restart(space: dict, browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(space["url"])
    assert "downloaded in the background" in page.locator("#status-banner").inner_text()
    open_tab(page, "Status")
    card = _pynet_card(page)
    card.wait_for()
    # The cards refresh themselves: first the download in progress, then ready.
    page.wait_for_function(
        """() => { const c = document.querySelector('#status-cards .card[data-component="PyNET-Bokeh weights"]');
                   return c && /downloading|converting|ready/.test(c.innerText); }""",
        timeout=60_000,
    )
    if "downloading" in card.inner_text():
        _shot(page, "10_space_status_downloading_1366")
    page.wait_for_function(
        """() => { const c = document.querySelector('#status-cards .card[data-component="PyNET-Bokeh weights"]');
                   return c && c.querySelector('.badge').innerText.trim() === 'ready'; }""",
        timeout=240_000,
    )
    assert "CC BY-NC-SA 4.0" in card.inner_text()
    assert "method: pynet" in page.locator("#status-cards").inner_text()
    scroll_width = page.evaluate("() => document.querySelector('#status-cards').scrollWidth")
    assert scroll_width <= 1366, scroll_width
    _shot(page, "11_space_status_ready_1366")
    assert space["files"].ranges("/PyNET_Bokeh_pretrained.zip") == [None]  # fetched once, by the app itself

    # Same page, same server process: render with PyNET.
    open_tab(page, "Render")
    page.locator("#photo input[type=file]").set_input_files(str(space["photo"]))
    page.wait_for_function("() => { const i = document.querySelector('#photo img'); return i && i.naturalWidth > 0; }")
    page.locator("#method input").click()
    page.get_by_role("option", name="pynet").first.click()
    page.locator("#render").click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#result img'); return i && i.naturalWidth > 0; }", timeout=180_000
    )
    assert "Unavailable" not in page.locator("#method-note").inner_text()  # re-checked, not the start-up state
    # The banner and the method list followed the fetch on this page (no reload, no restart).
    assert "being downloaded" not in page.locator("#status-banner").inner_text()
    assert page.locator("#method input").input_value() == "pynet"
    notes = page.locator("#render-info").inner_text()
    assert "PyNET preview" in notes or "pynet" in notes.lower(), notes
    _shot(page, "12_space_rendered_with_fetched_pynet_1366")
    page.close()


def test_status_cards_fit_a_phone(space: dict, browser) -> None:
    deadline = time.monotonic() + 240
    while not (space["cache"] / "pynet-bokeh" / "source.json").is_file():  # the background fetch has finished
        assert time.monotonic() < deadline, space["log"].read_text()[-3000:]
        time.sleep(0.5)
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(space["url"])
    open_tab(page, "Status")
    _pynet_card(page).wait_for()
    # A new page load shows the current state (filled in by the page-load event), not the state at start-up.
    page.wait_for_function(
        """() => { const c = document.querySelector('#status-cards .card[data-component="PyNET-Bokeh weights"]');
                   const b = document.querySelector('#status-banner');
                   return c && c.querySelector('.badge').innerText.trim() === 'ready'
                          && b && !b.innerText.includes('being downloaded'); }""",
        timeout=5_000,
    )
    widths = page.evaluate(
        "() => [...document.querySelectorAll('#status-cards .card')].map(c => c.getBoundingClientRect().right)"
    )
    assert widths and max(widths) <= 390, widths
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    _shot(page, "13_space_status_390")
    page.close()
