"""``report.html`` in a real browser (Debian chromium driven by Playwright): the results table is on the page
with the same rows as ``table.csv``, banners and charts render, narrow screens scroll the table instead of the
page. Screenshots are kept under ``artifacts/browser/`` (``BOKEH_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _browser import chromium_browser, require_chromium
from PIL import Image

from evaluation.run import main

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"


def test_report_page_shows_the_results_table(tmp_path, monkeypatch):
    require_chromium()
    import torch

    monkeypatch.setenv("BOKEH_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))
    preds = tmp_path / "preds"
    preds.mkdir()
    for i in ("0", "1"):
        Image.fromarray(np.full((96, 128, 3), 100, np.uint8)).save(preds / f"{i}.png")
    out = tmp_path / "run"
    synth = ["--synthetic-scenes", "2", "--synthetic-size", "128x96", "--warmup", "0"]
    assert main([*synth, "--methods", "lens", "gaussian", "--predictions", f"files={preds}", "--out", str(out)]) == 0
    expected = pd.read_csv(out / "table.csv")["Method"].tolist()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_browser(tmp_path / "home") as browser:
        for width, height in ((1366, 768), (390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto((out / "report.html").resolve().as_uri())
            # both figures (runtime vs PSNR, per-image metrics) draw from the page's script, one after the other
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 2", timeout=30_000)
            rows = page.locator("table.results tbody tr")
            assert rows.count() == len(expected)
            assert [rows.nth(i).locator("td").first.inner_text().strip() for i in range(rows.count())] == expected
            assert page.locator("table.results").is_visible()
            assert page.get_by_text("SYNTHETIC SAMPLE, NOT EBB!").first.is_visible()
            # the page itself never scrolls sideways; the table does inside its box
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
            page.close()
