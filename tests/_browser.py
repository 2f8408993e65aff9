"""Headless Debian chromium for the browser tests, driven by Playwright (never ``playwright install``).

Every browser test launches it the same way: the same flags, and a HOME/config/cache folder of its own so that
no profile of the machine's user is read or written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Offline and quiet: no GPU, no QUIC, no first-run UI, no background downloads (components, sync, safe browsing).
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def require_chromium() -> None:
    """Skip the calling test (with how to install it) when chromium or Playwright is missing."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install_system_deps.sh installs it as root)")
    pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def chromium_browser(home: Path, *extra_flags: str) -> Iterator[Any]:
    """A launched Playwright chromium ``Browser`` whose HOME is ``home`` (created); closed at the end."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra_flags], env=env)
        try:
            yield browser
        finally:
            browser.close()


def browser_home(tag: str = "") -> Path:
    """A per-process HOME folder for chromium under ``$TMPDIR`` (``pw-home[-tag]-<pid>``), so runs never share one."""
    name = f"pw-home-{tag}-{os.getpid()}" if tag else f"pw-home-{os.getpid()}"
    return Path(os.environ.get("TMPDIR", "/tmp")) / name


def open_tab(page: Any, name: str) -> None:
    """Click a Gradio tab; on a narrow screen Gradio moves the last tabs into a "More tabs" menu."""
    # Gradio first draws every tab, then measures and moves those that do not fit: wait until that settled.
    page.get_by_role("tab", name="Render").first.wait_for()
    page.wait_for_timeout(800)
    tab = page.get_by_role("tab", name=name)
    if tab.count() == 0 or not tab.first.is_visible():
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).click()
    else:
        tab.first.click()
