"""The portal tab in a real browser (Debian chromium driven by Playwright): sign in (a stand-in for Hugging Face
OAuth), submit too early, upload a bad zip, submit a good one with a double click, watch the progress, find the
new row on the portal's leaderboard. Screenshots go to ``artifacts/browser/`` (``BOKEH_TEST_ARTIFACTS``).

The sign-in stand-in: off a Space, Gradio's ``LoginButton`` routes log the browser in with the profile that
``gradio.oauth._get_mocked_oauth_info`` returns (normally the local token's owner, fetched from the Hub); the
test replaces that function with a fixed profile, so the whole OAuth flow of the page runs without a network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _app_server import free_port
from _browser import browser_home, chromium_browser, require_chromium
from _portal_testing import FakeHubApi, build_val294_like, png, prediction_arrays, write_zip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
USER = "tester-hf"


def _fake_oauth_info() -> dict:
    now = int(time.time())
    return {
        "access_token": "stand-in-token",
        "token_type": "bearer",
        "expires_in": 3600,
        "id_token": "stand-in",
        "scope": "openid profile",
        "expires_at": now + 3600,
        "userinfo": {
            "sub": "1",
            "name": "Test Researcher",
            "preferred_username": USER,
            "profile": f"https://huggingface.co/{USER}",
            "picture": "",
            "website": "",
            "aud": "stand-in",
            "auth_time": now,
            "nonce": "stand-in",
            "iat": now,
            "iss": "https://huggingface.co",
            "exp": now + 3600,
        },
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    pytest.importorskip("itsdangerous", reason="gradio's sign-in routes need itsdangerous (gradio[oauth])")
    import gradio as gr
    import gradio.oauth

    from evaluation.portal import Portal, PortalSettings
    from space.submit_tab import build_portal_board, build_portal_tab

    data = tmp_path_factory.mktemp("portal_browser")
    dataset = build_val294_like(data / "ebb")
    arrays = prediction_arrays(dataset)
    good = write_zip(data / "predictions.zip", {f"{i}.png": png(a) for i, a in arrays.items()}, prefix="preds/")
    bad = write_zip(data / "bad.zip", {"../escape.png": b"x", "4400.png": b"not an image"})
    api = FakeHubApi()
    portal = Portal(
        PortalSettings(root=data / "portal", dataset=str(dataset), hub_repo="org/results", device="cpu"),
        hf_api=api,
    )
    portal.start_worker(poll_s=0.3)
    original = gradio.oauth._get_mocked_oauth_info
    gradio.oauth._get_mocked_oauth_info = _fake_oauth_info
    # the app's layout: the portal's board on the Leaderboard tab, the forms on the Portal tab
    with gr.Blocks(title="portal test") as demo, gr.Tabs():
        with gr.Tab("Leaderboard", id="leaderboard") as leaderboard_tab:
            build_portal_board(portal)(leaderboard_tab.select)
        with gr.Tab("Portal", id="portal"):
            build_portal_tab(portal=portal, login=True)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        # localhost (not 127.0.0.1): the session cookie is Secure, which browsers accept over http on localhost
        yield {"url": f"http://localhost:{port}/", "good": good, "bad": bad, "portal": portal, "api": api}
    finally:
        demo.close()
        portal.stop_worker()
        gradio.oauth._get_mocked_oauth_info = original


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    with chromium_browser(browser_home()) as chromium:
        yield chromium


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open_submit(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Portal").click()
    page.get_by_role("tab", name="Submit").click()
    page.locator("#portal-method").wait_for()


def _upload(page, path: Path) -> None:
    page.locator("#portal-file input[type=file]").set_input_files(str(path))
    # the size link appears once the upload has reached the server
    page.locator("#portal-file a[download]").first.wait_for(timeout=60_000)
    # Gradio may show the name as two pieces (stem and extension, for truncation): compare without line breaks
    shown = page.locator("#portal-file").inner_text().replace("\n", "")
    assert path.name in shown, shown


def test_sign_in_submit_progress_and_new_row(server: dict, browser) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    _open_submit(page, server["url"])
    login = page.locator("#portal-login")
    assert "Sign in with Hugging Face" in login.inner_text()

    # Submitting before signing in is refused with a message, and the form keeps working.
    page.locator("#portal-send").click()
    page.locator("#portal-report").get_by_text("sign in with Hugging Face first").wait_for(timeout=20_000)
    _shot(page, "portal_01_not_signed_in")

    # Sign in: the stand-in profile comes back through Gradio's login routes and a session cookie.
    with page.expect_navigation(timeout=20_000):
        login.click()
    page.wait_for_load_state()
    _open_submit(page, server["url"])
    try:
        page.locator("#portal-who").get_by_text(f"@{USER}").wait_for(timeout=20_000)
    finally:
        _shot(page, "portal_01b_after_sign_in")
    assert f"Logout ({USER})" in page.locator("#portal-login").inner_text()

    page.locator("#portal-method textarea, #portal-method input").first.fill("BrowserNet")
    page.locator("#portal-authors textarea, #portal-authors input").first.fill("T. Researcher")
    page.locator("#portal-hw textarea, #portal-hw input").first.fill("RTX 4090")
    page.locator("#portal-link textarea, #portal-link input").first.fill("https://example.org/browsernet")
    page.locator("#portal-runtime textarea, #portal-runtime input").first.fill("0.05")
    licence = page.locator("#portal-licence input").first
    licence.fill("MIT")
    licence.press("Enter")
    page.locator("#portal-uses-depth input").check()

    # Without a file: a message, nothing queued.
    page.locator("#portal-send").click()
    page.locator("#portal-report").get_by_text("choose the .zip").wait_for(timeout=20_000)

    # The wrong zip: refused with every reason named.
    _upload(page, server["bad"])
    page.locator("#portal-send").click()
    report = page.locator("#portal-report")
    report.get_by_text("Refused").wait_for(timeout=30_000)
    assert "../escape.png" in report.inner_text()
    _shot(page, "portal_02_refused")
    assert server["portal"].store.submissions() == []

    # The right zip, submitted with a quick double click: one submission, then progress until scored.
    page.locator("#portal-file button[aria-label='Clear']").first.click()
    expect(page.locator("#portal-file a[download]")).to_have_count(0, timeout=10_000)  # cleared
    _upload(page, server["good"])
    page.locator("#portal-send").dblclick()
    try:
        report.get_by_text("Accepted as").wait_for(timeout=60_000)
    finally:
        _shot(page, "portal_03_after_submit")
    _shot(page, "portal_03_accepted")
    page.locator("#portal-progress").get_by_text("is scored").wait_for(timeout=120_000)
    _shot(page, "portal_04_scored")
    records = server["portal"].store.submissions()
    assert len(records) == 1 and records[0]["submitter"]["username"] == USER
    sub_id = records[0]["id"]
    assert sub_id in page.locator("#portal-mine").inner_text()

    # The new row on the Leaderboard tab, under both profiles (opening the tab refreshes it).
    page.get_by_role("tab", name="Leaderboard").click()
    board = page.locator("#portal-board")
    expect(board).to_contain_text("BrowserNet", timeout=20_000)
    assert USER in board.inner_text() and "0.050" in board.inner_text()
    assert board.locator("a[href='https://example.org/browsernet']").count() >= 1  # the name links to the paper
    _shot(page, "portal_05_leaderboard_pynet")
    page.locator("#portal-profile").get_by_text("dmshn").click()
    page.wait_for_timeout(500)
    expect(board).to_contain_text("BrowserNet", timeout=20_000)
    pynet = server["portal"].store.result(sub_id, "dmshn")["summary"]["metrics"]["psnr"]["mean"]
    assert f"{pynet:.2f}" in board.inner_text()
    page.set_viewport_size({"width": 390, "height": 844})
    _shot(page, "portal_06_leaderboard_phone")
    page.get_by_role("tab", name="Portal").click()
    page.get_by_role("tab", name="Submit").click()
    page.locator("#portal-send").wait_for()
    _shot(page, "portal_07_submit_phone")
    assert (("org/results", f"submissions/{sub_id}.json")) in server["api"].files
    context.close()
