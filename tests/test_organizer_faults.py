"""Organizer and researcher faults (issue 23, items 11-14): the study's Prolific links, a larger synthetic
benchmark, the leaderboard of a synthetic run, and the portal's size checks."""

from __future__ import annotations

import json

import pytest

from bokeh_model.errors import InputError
from evaluation.run import main as eval_main


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BOKEH_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "synthetic-cache"))
    monkeypatch.delenv("BOKEH_PYNET_WEIGHTS", raising=False)


def test_synthetic_benchmark_above_the_reference_default_size(tmp_path, capsys):
    """--synthetic-size 384x256 (98,304 pixels, above the lens reference's 65,536 default) builds and scores."""
    out = tmp_path / "run"
    code = eval_main(
        ["--synthetic-scenes", "1", "--synthetic-size", "384x256", "--methods", "gaussian", "--no-lpips"]
        + ["--warmup", "0", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"]["synthetic"] and run["dataset"]["fingerprint"]["ids"] == ["0"]
    from PIL import Image

    with Image.open(out / "targets" / "0.png") as target:
        assert target.size == (384, 256)


def test_synthetic_benchmark_refuses_a_size_it_cannot_build_in_reasonable_time():
    from evaluation.synthetic import SYNTHETIC_MAX_PIXELS, synthetic_source

    with pytest.raises(InputError, match="--synthetic-size"):
        synthetic_source(num_scenes=1, width=2048, height=1536, cache=False)
    assert SYNTHETIC_MAX_PIXELS >= 384 * 256


# ---------------------------------------------------------------- item 13: the leaderboard of a run


def _synthetic_run(out, scenes: int = 2, *extra: str) -> int:
    return eval_main(
        ["--synthetic-scenes", str(scenes), "--synthetic-size", "128x96", "--methods", "gaussian", "--no-lpips"]
        + ["--warmup", "0", "--device", "cpu", "--out", str(out), *extra]
    )


def test_synthetic_run_lists_no_paper_rows(tmp_path):
    """The paper's Table 1 rows are EBB! numbers: a synthetic run's table.md/csv/report show only measured rows."""
    import pandas as pd

    from evaluation import leaderboard

    out = tmp_path / "run"
    assert _synthetic_run(out) == 0
    table = pd.read_csv(out / "table.csv")
    assert list(table["Method"]) == ["gaussian"]
    markdown = (out / "table.md").read_text()
    assert leaderboard.PAPER_SOURCE not in markdown and "0.85₁" not in markdown
    assert "not on EBB! data" in markdown
    assert leaderboard.PAPER_SOURCE not in (out / "report.html").read_text()
    assert list(leaderboard.load_leaderboard(out)["Method"]) == ["gaussian"]
    # the paper's rows alone (nothing evaluated yet) are still there
    assert len(leaderboard.load_leaderboard(None)) == len(leaderboard.PAPER_ROWS)


def _ebb_run(lpips_trunk: dict | None = None) -> dict:
    lpips = {"available": lpips_trunk is not None, "reason": "" if lpips_trunk else "skipped with --no-lpips"}
    if lpips_trunk is not None:
        lpips["trunk"] = lpips_trunk
    metric = {"psnr": {"mean": 24.0}, "ssim": {"mean": 0.9}, "lpips": {"mean": 0.2 if lpips_trunk else None}}
    return {
        "status": "complete",
        "profile": "pynet",
        "dataset": {"name": "ebb_hf", "split": "val294", "synthetic": False, "fingerprint": {"n": 2, "sha256": "ab"}},
        "lpips": lpips,
        "methods": {
            "mine": {"metrics": metric, "n_images": 2, "runtime_s": {"mean": 0.1}},
            "other": {"metrics": metric, "n_images": 2, "runtime_s": {"mean": 0.2}},
        },
    }


def test_mos_is_ranked_once_beside_the_paper_rows():
    """An EBB! run with its own study: one ranking in the MOS column (this study's); the paper's MOS unranked."""
    import pandas as pd

    from evaluation import leaderboard

    mos = pd.DataFrame({"method": ["mine", "other"], "mos": [0.6, 0.9], "rank": [1, 2], "ci_low": 0.0, "ci_high": 1.0})
    run = _ebb_run()
    rows = leaderboard.leaderboard_rows(run, mos)
    paper = [r for r in rows if r["source"] == leaderboard.PAPER_SOURCE]
    assert len(paper) == len(leaderboard.PAPER_ROWS) and all(r["mos_rank"] is None for r in paper)
    markdown = leaderboard.render_markdown(run, rows)
    mos_cells = [line.split("|")[7].strip() for line in markdown.splitlines() if line.startswith("| ")][1:]
    ranked = [cell for cell in mos_cells if cell[-1:] in "₀₁₂₃₄₅₆₇₈₉" and cell != "–"]
    assert sorted(ranked) == ["0.60₁", "0.90₂"], mos_cells
    assert "0.85" in markdown and "0.85₁" not in markdown and "shown without ranks" in markdown
    # without a study of our own the paper's ranks stay
    assert "0.85₁" in leaderboard.render_markdown(run, leaderboard.leaderboard_rows(run))


def test_unofficial_lpips_trunk_cells_are_marked():
    from evaluation import leaderboard

    run = _ebb_run({"path": "/x/alexnet.pth", "sha256": "deadbeef" * 8, "official": False})
    markdown = leaderboard.render_markdown(run, leaderboard.leaderboard_rows(run))
    measured = [line for line in markdown.splitlines() if line.startswith("| mine ")]
    assert measured and "0.2000 †" in measured[0]
    assert "0.2438 |" in markdown  # the paper's LPIPS is not marked
    assert "unofficial AlexNet trunk" in markdown
    official = _ebb_run({"path": "/x/alexnet.pth", "sha256": "7be5be79" * 8, "official": True})
    assert "†" not in leaderboard.render_markdown(official, leaderboard.leaderboard_rows(official))


def test_not_scored_reasons_show_no_markdown_backticks_in_the_report(tmp_path):
    from evaluation import leaderboard

    out = tmp_path / "run"
    assert _synthetic_run(out) == 0
    run = json.loads((out / "run.json").read_text())
    run["skipped_methods"] = [{"method": "pynet", "reason": "weights missing; run `bokeh-model fetch pynet`"}]
    (out / "run.json").write_text(json.dumps(run))
    leaderboard.rebuild_tables(out)
    page = (out / "report.html").read_text()
    assert "<code>bokeh-model fetch pynet</code>" in page and "`bokeh-model" not in page
    assert "`bokeh-model fetch pynet`" in (out / "table.md").read_text()  # Markdown keeps its code span


def _zip_of_pairs(path, ids=(4400, 4401)):
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for i in ids:
            photo = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            for part, array in (("original", photo), ("bokeh", photo // 2 + 60)):
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="JPEG", quality=95)
                archive.writestr(f"Training/{part}/{i}.jpg", buffer.getvalue())
    return path


def test_a_run_that_can_score_nothing_fails(tmp_path, capsys):
    """Every available method needs depth and the data has none: exit 3 naming why, no table claiming N images."""
    from evaluation import ebb

    built = tmp_path / "hf"
    ebb.build_dataset(_zip_of_pairs(tmp_path / "Training.zip"), built, log=lambda line: None)
    out = tmp_path / "r"
    code = eval_main(["--dataset", str(built), "--split", "val294", "--warmup", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "no method can be scored" in err and "depth" in err
    assert not (out / "table.md").exists() and not (out / "run.json").exists()


def test_a_rerun_on_fewer_ids_leaves_no_old_files(tmp_path):
    out = tmp_path / "run"
    assert _synthetic_run(out, 3) == 0
    assert sorted(p.name for p in (out / "targets").iterdir()) == ["0.png", "1.png", "2.png"]
    assert _synthetic_run(out, 3, "--limit", "2") == 0
    for folder in (out / "targets", out / "inputs", out / "predictions" / "gaussian"):
        assert not [p.name for p in folder.iterdir() if p.stem == "2"], folder
        assert {p.stem for p in folder.iterdir()} == {"0", "1"}


# ---------------------------------------------------------------- item 14: the portal on a too-small dataset


def test_portal_refuses_a_dataset_too_small_for_a_profile_at_check_time(tmp_path, monkeypatch, capsys):
    """Targets of 72x60 px: under the pynet profile's 75 px (32-px crop + 11-px SSIM window). The submission is
    refused when checked, with the reason, and nothing is kept (no staging, no work/<id>/pynet)."""
    from _portal_testing import ALICE, META, build_val294_like, good_zip, make_portal, portal_leftovers
    from _portal_testing import prediction_arrays as arrays_of

    from evaluation.portal import PortalError
    from evaluation.submit import main as submit_main

    monkeypatch.delenv("BOKEH_ORGANIZER_TOKEN", raising=False)
    dataset = build_val294_like(tmp_path / "ebb", size=(72, 60))
    portal = make_portal(tmp_path, dataset)
    archive = good_zip(tmp_path / "preds.zip", arrays_of(dataset))
    with pytest.raises(PortalError, match=r"smaller than 75x75 pixels.*'pynet'"):
        portal.submit(archive, META, ALICE)
    assert portal.process_next() is None
    assert portal_leftovers(portal) == []
    assert not (portal.root / "work").exists()
    # the CLI: exit 2 with the reason, no traceback
    base = ["--portal-dir", str(tmp_path / "cli"), "--dataset", str(dataset), "--token", "t"]
    info = ["--method", "CliNet", "--authors", "C. Li", "--license", "MIT", "--user", "carol"]
    monkeypatch.setenv("BOKEH_ORGANIZER_TOKEN", "t")
    assert submit_main([*base, "submit", str(archive), *info, "--wait"]) == 2
    err = capsys.readouterr().err
    assert "smaller than 75x75" in err and "Traceback" not in err
    assert not (tmp_path / "cli" / "work").exists()


def test_portal_sizes_are_reported_in_mib_like_its_limits(tmp_path):
    """The per-file limit is 40 MiB (40 << 20 bytes): reported as "40 MiB", not "42 MB"; the README says the same."""
    from pathlib import Path

    from evaluation.portal.checks import CheckLimits, check_submission

    folder = tmp_path / "preds"
    folder.mkdir()
    (folder / "4400.png").write_bytes(b"\0" * (3 << 20))
    limits = CheckLimits(max_file_bytes=2 << 20)
    with pytest.raises(Exception) as caught:
        check_submission(folder, {"4400": (8, 8)}, staging_root=tmp_path / "staging", limits=limits)
    text = str(getattr(caught.value, "report", caught.value).render())
    assert "3 MiB" in text and "2 MiB" in text and " MB" not in text
    assert CheckLimits().max_file_bytes == 40 << 20
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "40 MiB per image" in readme and "(40 by default)" not in readme


def test_submit_tab_states_the_archive_limit_in_mib(tmp_path):
    """The Submit tab names the archive limit the portal enforces, in MiB (Gradio's "mb" is 2^20 bytes too)."""
    import gradio as gr

    from evaluation.portal.checks import CheckLimits
    from evaluation.portal.models import PortalSettings
    from evaluation.portal.service import Portal
    from space.submit_tab import build_portal_tab

    portal = Portal(PortalSettings(root=tmp_path / "portal", limits=CheckLimits(max_archive_bytes=300 << 20)))
    with gr.Blocks() as demo:
        build_portal_tab(portal=portal, login=False)
    texts = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    intro = next(text for text in texts if "Submit your method" in text)
    assert "Archives up to 300 MiB are accepted." in intro and " MB" not in intro
