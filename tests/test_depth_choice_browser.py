"""The Render tab's depth-model choice in a real browser (Debian chromium driven by Playwright): each model is
offered by name, a line says whether the picked one is installed, and a missing one gives a short message.

The Space's default depth model here is a tiny random Depth Anything in a local folder (not a real model); the known
models are looked up in this machine's Hugging Face cache, where nothing can be downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _app_server import example_photo, serving
from _browser import browser_home, chromium_browser, require_chromium
from _tiny_models import save_tiny_depth_anything

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    from bokeh_model.depth import depth_model_status
    from space.app import build_app
    from space.config import SpaceSettings

    data = tmp_path_factory.mktemp("depth_choice")
    photo = example_photo(data)
    settings = SpaceSettings(
        depth_model=str(save_tiny_depth_anything(data / "tiny-da", size=126)),
        results_dir=data / "results",
        study_db=f"sqlite:///{data / 'study.db'}",
        max_render_side=640,
    )
    with serving(build_app(settings)) as url:
        yield {"url": url, "photo": photo, "small_installed": depth_model_status("depth-anything-v2-small")[0]}


def _wait_text(page, selector: str, text: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text], timeout=timeout
    )


def test_depth_model_choice(server: dict) -> None:
    from playwright.sync_api import expect

    with chromium_browser(browser_home("depth")) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(server["url"])
        page.locator("#photo input[type=file]").set_input_files(str(server["photo"]))
        page.wait_for_function("() => document.querySelector('#photo img')?.naturalWidth > 0", timeout=60_000)
        page.locator("#advanced").get_by_text("Advanced").first.click()
        # The accordion renders its contents after the click: wait for each choice rather than count at once.
        for label in ("DPT-Hybrid (MiDaS v3.0) (2021, Apache-2.0)", "This Space's depth model"):
            expect(page.get_by_label(label)).to_have_count(1, timeout=30_000)
        page.get_by_label("Depth Anything V2 Small (2024, Apache-2.0)").check()
        if server["small_installed"]:  # a machine whose Hugging Face cache has it
            _wait_text(page, "#depth-model-note", "Depth Anything V2 Small, 2024, 24.8 M parameters")
        else:
            _wait_text(page, "#depth-model-note", "Depth Anything V2 Small is not installed on this Space")
            page.locator("#render").click()
            _wait_text(page, "#render-message", "Depth Anything V2 Small is not installed on this Space (yet)")
            assert "/tmp" not in page.locator("#render-message").inner_text()
        page.get_by_label("This Space's depth model").check()
        _wait_text(page, "#depth-model-note", "This Space's depth model: installed")
        page.locator("#render").click()
        _wait_text(page, "#render-info", "Depth: depth model This Space's depth model")
        assert "tiny-da" not in page.locator("#render-info").inner_text()  # no server path
        page.close()
