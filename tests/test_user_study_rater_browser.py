"""The rater page in a real browser (Debian chromium driven by Playwright): keyboard-only sessions, inline
rejections, phone layout, MTurk iframe and Prolific hand-off, escaping. Screenshots go to ``artifacts/rater/``
(``BOKEH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
from _app_server import serving
from _browser import browser_home, chromium_browser, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "rater"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    data = tmp_path_factory.mktemp("rater_browser")
    mp = pytest.MonkeyPatch()
    mp.setenv("BOKEH_DATA_DIR", str(data / "data"))
    mp.setenv("BOKEH_RATER_SECRET", "browser-secret")
    mp.delenv("BOKEH_STUDY_HUB_REPO", raising=False)
    from space.study_tab import build_demo
    from user_study.config import StudyConfig
    from user_study.service import get_service
    from user_study.testing import make_fake_run

    db_url = f"sqlite:///{data / 'study.db'}"
    service = get_service(db_url)
    run = make_fake_run(data / "run", methods=("lens", "gaussian"), scenes=("1", "2", "3"), size=(1200, 800))
    plain = {"gold_per_session": 0, "trap_per_session": 0, "hidden_ref_per_session": 0}
    none = {"n_gold": 0, "n_trap": 0, "n_hidden_ref": 0}
    service.create_study(
        run,
        StudyConfig(title="Keyboard study", items_per_session=2, min_view_ms=300, completion_code="KEYS42", **plain),
        study_id="kb",
        **none,
    )
    service.create_study(
        run, StudyConfig(title="Slow study", items_per_session=2, min_view_ms=2500, **plain), study_id="slowish", **none
    )
    service.create_study(run, StudyConfig(title="Phone study", items_per_session=3, min_view_ms=0), study_id="phone")
    service.create_study(
        run, StudyConfig(title="HIT", items_per_session=1, min_view_ms=0, **plain), study_id="mt", **none
    )
    service.create_study(
        run,
        StudyConfig(
            title="Prolific study",
            items_per_session=1,
            min_view_ms=0,
            completion_code="C0DE99",
            completion_url="https://app.prolific.com/submissions/complete?cc={code}",
            **plain,
        ),
        study_id="pro",
        **none,
    )
    try:
        with serving(build_demo(db_url, organizer_token="org-token")) as url:
            yield {"url": url.rstrip("/"), "service": service}  # paths below start with "/"
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    home = browser_home()
    # the stand-in HIT page is fulfilled by Playwright and treated as public: let it frame loopback
    with chromium_browser(home, "--disable-features=LocalNetworkAccessChecks") as chromium:
        yield chromium


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _wait_item(page, k: int, n: int) -> None:
    page.locator("#progress").filter(has_text=f"Item {k} of {n}").wait_for(timeout=20_000)
    page.wait_for_function(
        "() => ['left-img', 'right-img'].every(id => { const i = document.getElementById(id);"
        " return i.complete && i.naturalWidth > 0; })",
        timeout=20_000,
    )


def _assert_fits(page) -> None:
    """Both images, every score button and Submit inside the viewport; no horizontal scrolling."""
    vw, vh, sw = page.evaluate("() => [innerWidth, innerHeight, document.documentElement.scrollWidth]")
    assert sw <= vw, f"horizontal scroll: content {sw}px wide in a {vw}px viewport"
    sel = ["#left-img", "#right-img", "#submit-btn", *[f"#scores button >> nth={i}" for i in range(5)]]
    for s in sel:
        box = page.locator(s).bounding_box()
        assert box is not None, s
        assert box["x"] >= 0 and box["y"] >= 0, (s, box)
        assert box["x"] + box["width"] <= vw + 0.5 and box["y"] + box["height"] <= vh + 0.5, (s, box, vw, vh)
    for img in ("#left-img", "#right-img"):
        assert page.locator(img).bounding_box()["height"] >= 100, "images squeezed to thumbnails"


def test_keyboard_only_session(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{server['url']}/?study=kb&rater=keyboard-1")  # an old Gradio-form link: redirected
    assert "/rate?study=kb&rater=keyboard-1" in page.url
    page.locator("#start-btn").wait_for()
    assert page.locator("#instructions").get_attribute("open") is not None  # instructions first
    _shot(page, "01_instructions_1366x768")
    page.keyboard.press("Enter")  # start
    for k, score in ((1, "3"), (2, "1")):
        _wait_item(page, k, 2)
        if k == 1:
            assert page.locator("#instructions").get_attribute("open") is None  # collapsed, still reachable
            _assert_fits(page)
        time.sleep(0.4)  # the study's minimum viewing time (300 ms)
        page.keyboard.press(score)
        assert page.locator(f"#scores button[data-key='{score}']").get_attribute("aria-checked") == "true"
        if k == 1:
            _shot(page, "02_item_1366x768")
        page.keyboard.press("Enter")
    page.locator("#end-title").filter(has_text="Thank you").wait_for(timeout=20_000)
    assert page.locator("#code").inner_text() == "KEYS42"
    _shot(page, "03_done_1366x768")
    ratings = server["service"].ratings_frame("kb")
    mine = ratings[ratings["rater_id"] == server["service"].rater_id("keyboard-1")]
    assert sorted(mine["score"]) == [1, 3]
    page.close()


def test_too_fast_submit_then_good_one_without_reload(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{server['url']}/rate?study=slowish&rater=hasty-1")
    page.locator("#start-btn").click()
    _wait_item(page, 1, 2)
    page.keyboard.press("Enter")  # no score yet
    assert "Choose a score" in page.locator("#feedback").inner_text()
    page.locator("#scores button[data-key='2']").click()
    page.locator("#submit-btn").click()  # well within the 2.5 s minimum
    page.locator("#feedback").filter(has_text="longer").wait_for(timeout=10_000)
    _shot(page, "04_too_fast_inline_1366x768")
    # nothing is blocked: same item, the images, the chosen score and Submit are all still there
    assert "Item 1 of 2" in page.locator("#progress").inner_text()
    assert page.locator("#scores button[data-key='2']").get_attribute("aria-checked") == "true"
    assert page.locator("#submit-btn").is_enabled() and page.locator("#left-img").is_visible()
    time.sleep(2.6)
    page.locator("#submit-btn").click()
    _wait_item(page, 2, 2)
    assert page.locator("#feedback").inner_text() == ""
    page.close()


def test_phone_layout_fits_without_horizontal_scroll(server: dict, browser) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(f"{server['url']}/rate?study=phone&rater=phone-1")
    page.locator("#start-btn").wait_for()
    _shot(page, "05_instructions_390x844")
    page.locator("#start-btn").tap()
    _wait_item(page, 1, 6)
    _assert_fits(page)
    page.locator("#scores button[data-key='4']").tap()
    _shot(page, "06_item_390x844")
    page.locator("#submit-btn").tap()
    _wait_item(page, 2, 6)
    _assert_fits(page)
    page.locator("#instructions summary").tap()  # instructions opened again on a phone: page scrolls, no overlap
    assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    context.close()


def test_mturk_preview_and_external_submit_inside_an_iframe(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    hit = (
        f"{server['url']}/rate?study=mt&workerId=W123&hitId=H1&turkSubmitTo={quote('https://workersandbox.mturk.com')}"
    )
    posted: list[str] = []
    page.route(
        "https://workersandbox.mturk.com/**",
        lambda route: (posted.append(route.request.post_data or ""), route.fulfill(body="HIT submitted")),
    )

    # the HIT page: another origin (localhost, not 127.0.0.1) that frames the rater page, as MTurk does
    parent = server["url"].replace("127.0.0.1", "localhost") + "/mturk-hit"

    def frame_page(assignment: str) -> None:
        src = f"{hit}&assignmentId={assignment}".replace("&", "&amp;")
        page.route(
            parent,
            lambda route: route.fulfill(
                content_type="text/html", body=f'<iframe id="hit" src="{src}" width="1300" height="700"></iframe>'
            ),
        )
        page.goto(parent)

    frame_page("ASSIGNMENT_ID_NOT_AVAILABLE")  # preview: instructions only, nothing can be rated
    frame = page.frame_locator("#hit")
    frame.locator("#start-note").filter(has_text="preview").wait_for(timeout=20_000)
    assert frame.locator("#task").inner_text().startswith("Each item shows")
    assert not frame.locator("#start-form").is_visible() and not frame.locator("#item").is_visible()
    _shot(page, "07_mturk_preview")
    page.unroute(parent)
    frame_page("A-777")
    frame = page.frame_locator("#hit")
    frame.locator("#start-btn").click()
    frame.locator("#progress").filter(has_text="Item 1 of 1").wait_for(timeout=20_000)
    frame.locator("#scores button[data-key='0']").click()
    frame.locator("#submit-btn").click()
    deadline = time.time() + 20
    while not posted and time.time() < deadline:
        page.wait_for_timeout(200)
    assert posted, "the page did not submit the HIT to MTurk"
    form = parse_qs(posted[0])
    assert form["assignmentId"] == ["A-777"] and len(form["completion_code"][0]) == 10
    page.close()


def test_prolific_completion_redirect(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.route("https://app.prolific.com/**", lambda route: route.fulfill(body="completed"))
    page.goto(f"{server['url']}/rate?study=pro&PROLIFIC_PID=P-1&STUDY_ID=S-1&SESSION_ID=X-1")
    page.locator("#start-btn").click()
    _wait_item(page, 1, 1)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.locator("#code").filter(has_text="C0DE99").wait_for(timeout=20_000)
    assert page.locator("#handoff a").get_attribute("href").endswith("cc=C0DE99")
    page.wait_for_url("https://app.prolific.com/submissions/complete?cc=C0DE99", timeout=20_000)
    ratings = server["service"].ratings_frame("pro")
    assert set(ratings["rater_id"]) == {server["service"].rater_id("P-1", "prolific")}
    page.close()


def test_reflected_study_id_is_text(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    bad = "<img src=/evil.png onerror=alert(1)>"
    page.goto(f"{server['url']}/?study={quote(bad)}&rater=x")
    page.locator("#error").filter(has_text="unknown study").wait_for(timeout=20_000)
    assert bad in page.locator("#error").inner_text()  # shown as text
    assert page.evaluate("() => document.querySelectorAll('img[src*=evil]').length") == 0
    assert not any(urlparse(url).path == "/evil.png" for url in requests)  # the image was never fetched
    page.close()


def test_study_tab_builds_links_and_exports_with_the_token(server: dict, browser) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.goto(server["url"] + "/")
    page.locator("#study-link-id textarea, #study-link-id input").first.fill("kb")
    page.get_by_role("button", name="Rater link").click()
    link = page.locator("#study-link a")
    link.wait_for(timeout=20_000)
    assert link.get_attribute("href") == server["url"].rstrip("/") + "/rate?study=kb"  # absolute, no placeholder
    page.get_by_text("Organizer").first.click()
    form = page.locator("#study-export-form")
    form.wait_for(timeout=20_000)
    form.locator("input[name=token]").fill("org-token")
    form.locator("input[name=study]").fill("kb")
    with page.context.expect_event("download", timeout=20_000) as download:
        form.locator("button").click()
    assert download.value.suggested_filename == "ratings_kb.csv"
    assert Path(download.value.path()).read_text().startswith("rating_id,")
    _shot(page, "08_study_tab")
    page.close()
