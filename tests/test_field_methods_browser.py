"""Bokehlicious and BokehMe in the Space beside PyNET, in a real browser at 1366x768 and 390x844 (issue 21).

TEST STAND-INS: every network here (PyNET, Bokehlicious ``small``, BokehMe's ARNet/IUNet) has RANDOM weights saved
in the real formats. They check the plumbing only (install through ``fetch_method_weights`` from ``file://``
URLs, availability, controls, render, Compare); the pictures they produce mean nothing.

One app server for the module, with small processing and CPU preview sizes so that each render takes seconds on
two shared cores. Screenshots go to ``artifacts/browser/field_*`` (``BOKEH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _app_server import browser_space_settings, serving
from _browser import browser_home, chromium_browser, require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}
MISSING = ("not installed", "unavailable", "cannot run", "bokeh_model fetch", "weights")  # missing weights


def _install_stand_ins(folder: Path) -> Path:
    """Random Bokehlicious/BokehMe weights installed through the real fetch path; a random PyNET folder."""
    from bokeh_model import PyNET
    from bokeh_model.method_weights import fetch_method_weights, installed_weights
    from bokeh_model.modeling_bokehlicious import Bokehlicious
    from bokeh_model.modeling_bokehme import ARNet, IUNet

    torch.manual_seed(0)
    published = folder / "published"  # what the authors' URLs would serve, here random stand-ins
    published.mkdir()
    torch.save(Bokehlicious().state_dict(), published / "small.pt")  # the authors' `small` architecture
    bokehme = published / "bokehme"
    bokehme.mkdir()
    torch.save({"model": ARNet().state_dict()}, bokehme / "arnet.pth")
    torch.save({"model": IUNet().state_dict()}, bokehme / "iunet.pth")
    fetch_method_weights("bokehlicious", "small", url=(published / "small.pt").as_uri(), offline=False, progress=False)
    fetch_method_weights("bokehme", url=bokehme.as_uri() + "/", offline=False, progress=False)
    assert installed_weights("bokehlicious", "small") is not None and installed_weights("bokehme") is not None
    pynet = folder / "pynet-random"
    PyNET().save_pretrained(pynet)
    return pynet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_chromium()
    data = tmp_path_factory.mktemp("field_space")
    mp = pytest.MonkeyPatch()
    mp.setenv("BOKEH_DATA_DIR", str(data))
    mp.setenv("BOKEH_CACHE", str(data / "cache"))
    for name in ("BOKEH_PORTAL_DATASET", "SPACE_ID", "BOKEH_FETCH_MODELS", "BOKEH_PYNET_WEIGHTS"):
        mp.delenv(name, raising=False)
    from space.app import build_app
    from space.services import get_method

    get_method.cache_clear()  # instances made under another BOKEH_CACHE by earlier tests
    pynet = _install_stand_ins(data)
    settings = browser_space_settings(
        data,
        pynet_weights=str(pynet),
        organizer_token=None,
        max_render_side=384,
        cpu_preview_side=192,  # Bokehlicious and BokehMe on a CPU preview: seconds, not minutes
        pynet_cpu_preview_side=192,  # and PyNET on a chosen (labelled) preview instead of its 1536-px scale
    )
    try:
        with serving(build_app(settings)) as url:
            yield {"url": url}
    finally:
        get_method.cache_clear()
        mp.undo()


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    with chromium_browser(browser_home("field")) as chromium:
        yield chromium


def _shot(page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"field_{name}.png"), full_page=full_page)


def _wait_text(page, selector: str, text: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text], timeout=timeout
    )


def _pick_method(page, name: str) -> str:
    """Choose ``name`` in the Method dropdown; returns the method note shown for it."""
    page.locator("#method input").click()
    options = page.get_by_role("option")
    assert options.filter(has_text="(unavailable)").count() == 0, options.all_inner_texts()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function("n => document.querySelector('#method input')?.value === n", arg=name, timeout=10_000)
    page.wait_for_timeout(500)  # the note and the controls follow the change event
    return page.locator("#method-note").inner_text()


def _result_src(page) -> str:
    return page.evaluate(
        "() => [...document.querySelectorAll('#result img')].map((i) => i.naturalWidth > 0 ? i.src : '').join(' ')"
    )


def _assert_rendered(page, method: str, before: str) -> str:
    message = page.locator("#render-message").inner_text()
    notes = page.locator("#render-info").inner_text()
    assert message.startswith("✓ " + method), message
    # nothing about missing weights (the approximate-depth warning may stand: no depth model here)
    assert not any(word in (message + notes).lower() for word in MISSING), notes
    page.wait_for_function(  # the new before/after pair has loaded (images load after the message)
        """(b) => { const s = [...document.querySelectorAll('#result img')].map((i) => i.naturalWidth > 0 ? i.src : '')
                   .join(' '); return s.trim() && s !== b; }""",
        arg=before,
        timeout=30_000,
    )
    # and is no longer drawn faded (Gradio's pending state): no second render follows the one reported
    page.wait_for_function(
        """() => { for (let e = document.querySelector('#result img'); e; e = e.parentElement)
                     if (parseFloat(getComputedStyle(e).opacity) < 1) return false;
                   return true; }""",
        timeout=60_000,
    )
    after = _result_src(page)
    return after


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_bokehlicious_and_bokehme_render_beside_pynet(server: dict, browser, size: str) -> None:
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server["url"])
    page.locator("#photo").wait_for()
    # every method has its weights: none is listed as unavailable
    example = page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").nth(1)
    example.scroll_into_view_if_needed()
    example.click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#photo img'); return i && i.naturalWidth > 0; }", timeout=30_000
    )
    page.evaluate("() => window.scrollTo(0, 0)")

    # PyNET's card says its weights' licence too (it did not: only Bokehlicious and BokehMe stated theirs)
    assert "CC BY-NC-SA 4.0" in _pick_method(page, "pynet")

    # Bokehlicious: no depth, its aperture slider is beside the photo (not hidden in Advanced), licence in the note
    note = _pick_method(page, "bokehlicious")
    assert "Bokehlicious" in note and "no licence" in note.lower(), note
    aperture = page.locator("#bokehlicious-aperture")
    assert aperture.is_visible(), "the aperture slider is not shown with Bokehlicious"
    assert not page.locator("#advanced").locator("#bokehlicious-aperture").count()
    assert "aperture" in aperture.inner_text().lower()
    number = aperture.locator("input[type=number]")
    number.fill("2.8")
    number.press("Enter")
    page.wait_for_timeout(300)
    assert float(aperture.locator("input[type=range]").input_value()) == pytest.approx(2.8)
    render = page.locator("#render")
    render.scroll_into_view_if_needed()
    render.click()
    _wait_text(page, "#render-message", "✓ bokehlicious", timeout=180_000)
    first = _assert_rendered(page, "bokehlicious", "")
    assert "Bokehlicious preview" in page.locator("#render-info").inner_text()  # the CPU preview ran
    _shot(page, f"{size}_01_bokehlicious")
    _shot(page, f"{size}_01_bokehlicious_full", full_page=True)

    # BokehMe (the full method, with the two networks): a click on the photo sets the focus and renders
    note = _pick_method(page, "bokehme")
    assert "BokehMe" in note and "non-commercial" in note, note
    photo = page.locator("#photo img").first
    photo.scroll_into_view_if_needed()
    box = photo.bounding_box()
    photo.click(position={"x": box["width"] * 0.4, "y": box["height"] * 0.6})
    _wait_text(page, "#render-message", "✓ bokehme, focus at", timeout=180_000)
    second = _assert_rendered(page, "bokehme", first)
    assert "BokehMe preview" in page.locator("#render-info").inner_text()
    _shot(page, f"{size}_02_bokehme_focus")

    # BokehMe's classical stage alone (the project's own scatter code, no weights): says it is not the full method
    note = _pick_method(page, "bokehme_classical")
    assert "not the full BokehMe" in note, note
    render.scroll_into_view_if_needed()
    render.click()
    _wait_text(page, "#render-message", "✓ bokehme_classical", timeout=180_000)
    _assert_rendered(page, "bokehme_classical", second)

    # Compare: PyNET, Bokehlicious and BokehMe side by side, each captioned with its runtime
    page.get_by_role("tab", name="Render").first.wait_for()
    tab = page.get_by_role("tab", name="Compare")
    if tab.count() == 0 or not tab.first.is_visible():
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text="Compare").click()
    else:
        tab.first.click()
    page.locator("#compare").click()
    page.wait_for_function(
        "() => (document.querySelector('#compare-table')?.innerText || '').includes('bokehme_classical')",
        timeout=300_000,
    )
    captions = page.locator("#compare-gallery").inner_text()
    for method in ("pynet (", "bokehlicious (", "bokehme (", "bokehme_classical ("):
        assert method in captions, captions
    table = page.locator("#compare-table").inner_text()
    assert "unavailable" not in table, table
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-gallery img')].filter((i) => i.naturalWidth > 0).length >= 9",
        timeout=30_000,
    )
    page.wait_for_timeout(500)
    # the notes (which say the learned methods ran on a CPU preview) are read whole, not cut at the table's edge
    cut = page.evaluate(  # words drawn beyond the table's right edge (hidden there: a visitor cannot read them)
        """() => { const t = document.querySelector('#compare-table'); const right = t.getBoundingClientRect().right;
                   const cut = []; const walker = document.createTreeWalker(t, NodeFilter.SHOW_TEXT);
                   for (let n = walker.nextNode(); n; n = walker.nextNode()) {
                     // Gradio's hidden copy of a row (visibility: hidden, for measuring) is not what a visitor sees
                     if (!n.parentElement.checkVisibility({checkVisibilityCSS: true, checkOpacity: true})) continue;
                     const range = document.createRange(); range.selectNodeContents(n);
                     if ([...range.getClientRects()].some((r) => r.width > 0 && r.right > right + 1)) cut.push(n.data);
                   }
                   return cut; }"""
    )
    assert not cut, f"table text cut at its right edge: {cut}"
    assert "Bokehlicious preview" in page.locator("#compare-table").inner_text()
    # a caption covers at most a third of its picture (phone: two pictures a row)
    covering = page.evaluate(
        "() => [...document.querySelectorAll('#compare-gallery .caption-label')].filter((e) => {"
        "const item = e.closest('button, .thumbnail-item') || e.parentElement;"
        "return e.getBoundingClientRect().height > item.getBoundingClientRect().height / 3;})"
        ".map((e) => e.innerText)"
    )
    assert not covering, f"captions cover their picture: {covering}"
    _shot(page, f"{size}_03_compare", full_page=True)
    page.close()


def test_cli_list_shows_both_methods_with_their_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``bokeh-model list``: Bokehlicious and BokehMe with the licence found in the authors' repositories."""
    from bokeh_model.cli import main

    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path))  # nothing installed: the licence shows all the same
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def block(name: str) -> str:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        end = next((i for i in range(start + 1, len(lines)) if not lines[i][:1].isspace()), len(lines))
        return "\n".join(lines[start:end])

    assert "licence: No licence" in block("bokehlicious")
    assert "licence: Unclear, treat as non-commercial" in block("bokehme")
    assert "licence" not in block("bokehme_classical")  # no published weights: the project's own scatter code


def test_every_method_note_states_the_weights_licence() -> None:
    """The Render tab's note of each method with published weights names their licence as found."""
    from space.render_tab import _describe_method
    from space.services import MethodInfo

    def note(name: str, description: str) -> str:
        return _describe_method([MethodInfo(name, description, True, "", None)], name)

    assert "CC BY-NC-SA 4.0" in note("pynet", "PyNET-Bokeh (CVPRW 2020): bokeh learned from Canon DSLR photos.")
    assert "No licence" in note("bokehlicious", "Bokehlicious: learned bokeh.")
    assert "non-commercial" in note("bokehme", "BokehMe: scatter and two networks.")
    assert note("lens", "Thin-lens renderer.") == "Thin-lens renderer."  # the project's own code: no extra line
    stated = "BokehMe (...). Licence: non-commercial use only."
    assert note("bokehme", stated) == stated  # stated once, not twice
