"""Organizer CLI: create, import, status, aggregate (MOS files + leaderboard hook), export, exclude, pairwise."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from user_study.__main__ import main, read_import_frame
from user_study.service import StudyService
from user_study.storage import hash_rater
from user_study.testing import make_fake_run, simulated_score

QUALITY = {"pynet": 0.4, "blur": 1.6, "identity": 3.0}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "cli-secret")
    monkeypatch.delenv("BOKEH_STUDY_HUB_REPO", raising=False)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = make_fake_run(tmp_path / "run", methods=tuple(QUALITY), scenes=("1", "2", "3", "4"))
    return url, run


def _simulate(url, tmp_path, sid, n_raters=10, careless=(), seed=0):
    svc = StudyService(url, rater_secret="cli-secret", data_dir=tmp_path / "data")
    rng = np.random.default_rng(seed)
    for r in range(n_raters):
        view = svc.begin(sid, f"sim{r}")
        while not view.done and not view.finished:
            if view.mode == "pairwise":
                score = 0 if rng.random() < 0.8 else 1  # prefers method A on 80 % of pairs
                score = 1 - score if view.left_path and "/m1/" in view.left_path else score
            else:
                score = simulated_score(
                    svc, view.rater_id, view.slot_token, rng, quality=QUALITY, careless=r in careless
                )
            view = svc.submit(view.rater_id, view.slot_token, score).view
    svc.close()


@pytest.mark.slow
def test_cli_end_to_end(env, tmp_path, monkeypatch, capsys):
    url, run = env
    assert (
        main(
            [
                "--db",
                url,
                "create",
                str(run),
                "--study-id",
                "cli",
                "--items-per-session",
                "6",
                "--min-view-ms",
                "0",
                "--label",
                "2=clearly visible",
                "--completion-code",
                "C0DE",
            ]
        )
        == 0
    )
    created = capsys.readouterr().out
    assert "created study cli" in created
    assert "<space url>/rate?study=cli&rater=<id>" in created and "/?study=" not in created  # the rater page
    # bad input -> exit code 2, with a message naming the problem
    assert main(["--db", url, "create", str(tmp_path / "missing")]) == 2
    assert main(["--db", url, "create", str(run), "--label", "0=nope"]) == 2
    assert main(["--db", url, "create", str(run), "--study-id", "cli"]) == 2
    assert main(["--db", url, "status", "nope"]) == 2
    assert "unknown study" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0

    _simulate(url, tmp_path, "cli", n_raters=10, careless=(8, 9))
    mturk = pd.DataFrame(
        {
            "WorkerId": ["A1", "A1", "A2", "A3"],
            "AssignmentStatus": ["Approved", "Approved", "Approved", "Rejected"],
            "Input.method": ["pynet", "blur", "pynet", "pynet"],
            "Input.scene": ["1", "1", "2", "3"],
            "Answer.score": ["0 - almost identical", "2 - clearly visible", "1 - small differences", "4"],
        }
    )
    mturk.to_csv(tmp_path / "batch.csv", index=False)
    frame = read_import_frame(tmp_path / "batch.csv")
    assert frame["score"].tolist() == [0, 2, 1] and frame["rater"].tolist() == ["A1", "A1", "A2"]
    assert main(["--db", url, "import", "cli", str(tmp_path / "batch.csv")]) == 0
    assert "imported 3 ratings" in capsys.readouterr().out
    assert main(["--db", url, "import", "cli", str(tmp_path / "batch.csv")]) == 0
    assert "skipped 3 duplicates" in capsys.readouterr().out

    assert main(["--db", url, "exclude", "cli", "--rater", "sim7", "--reason", '=HYPERLINK("x")']) == 0
    assert main(["--db", url, "status", "cli"]) == 0
    out = capsys.readouterr().out
    assert "progress per method" in out and "QC checks failed" in out
    assert main(["--db", url, "status", "cli", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["n_raters"] == 12 and status["excluded_manual"] > 0

    calls = []
    fake_eval = types.ModuleType("evaluation")
    fake_lb = types.ModuleType("evaluation.leaderboard")
    fake_lb.rebuild_tables = lambda d: calls.append(pd.read_csv(d / "mos.csv"))
    fake_eval.leaderboard = fake_lb
    monkeypatch.setitem(sys.modules, "evaluation", fake_eval)
    monkeypatch.setitem(sys.modules, "evaluation.leaderboard", fake_lb)
    assert main(["--db", url, "aggregate", "cli", "--out", str(run), "--rounds", "200"]) == 0
    out = capsys.readouterr().out
    assert "leaderboard: done" in out and "Krippendorff alpha" in out
    mos = pd.read_csv(run / "mos.csv")
    assert list(mos.columns) == ["method", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]
    assert mos["method"].tolist() == ["pynet", "blur", "identity"] and mos["rank"].tolist() == [1, 2, 3]
    # sig_rank = 1 + methods whose CI lies entirely below this one's (the simulated sessions are planned at random,
    # so whether two neighbouring CIs overlap varies between runs; the rule itself is tested in test_user_study_stats)
    expected = [1 + int((mos["ci_high"] < low).sum()) for low in mos["ci_low"]]
    assert mos["sig_rank"].tolist() == expected and expected[0] == 1 and expected == sorted(expected)
    assert len(calls) == 1 and calls[0].equals(mos)
    for name in (
        "item_mos.csv",
        "paired_tests.csv",
        "reliability.json",
        "metric_mos_correlation.csv",
        "qc_decisions.csv",
        "mos_chart.html",
        "study_summary.json",
        "mos_details.csv",
    ):
        assert (run / name).is_file(), name
    corr = pd.read_csv(run / "metric_mos_correlation.csv")
    assert set(corr["metric"]) == {"psnr", "ssim", "lpips"}
    # synthetic run: PSNR falls as noise (and simulated MOS) rises, so the correlation is negative
    assert corr.set_index(["metric", "level"]).loc[("psnr", "item"), "spearman"] < 0
    summary = json.loads((run / "study_summary.json").read_text())
    assert sum(v for k, v in summary["excluded_by_rule"].items() if k != "manual") >= 2
    assert "plotly" in (run / "mos_chart.html").read_text()[:5000].lower()
    qc = pd.read_csv(run / "qc_decisions.csv")
    assert {"level", "target_id", "rule", "value", "threshold", "excluded"} <= set(qc.columns)

    monkeypatch.delitem(sys.modules, "evaluation.leaderboard")
    monkeypatch.setitem(sys.modules, "evaluation", types.ModuleType("evaluation"))
    assert main(["--db", url, "aggregate", "cli", "--out", str(tmp_path / "agg"), "--rounds", "50"]) == 0
    assert "not importable" in capsys.readouterr().out

    assert main(["--db", url, "export", "cli", "--out", str(tmp_path / "ratings.csv")]) == 0
    text = (tmp_path / "ratings.csv").read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert "sim1" not in text and "A1" not in text  # only hashed rater ids
    exported = pd.read_csv(tmp_path / "ratings.csv")
    careless = exported[exported["rater_id"].isin([hash_rater("cli-secret", "link", f"sim{i}") for i in (8, 9)])]
    assert len(careless) == 18 and careless["qc_excluded"].all()  # random raters are caught by QC
    assert len(exported) == status["n_ratings"] and {"qc_excluded", "qc_reason"} <= set(exported.columns)
    assert main(["--db", url, "export", "cli", "--out", str(tmp_path / "ratings.jsonl")]) == 0
    assert len((tmp_path / "ratings.jsonl").read_text().splitlines()) == len(exported)
    assert main(["--db", url, "list"]) == 0
    assert "cli" in capsys.readouterr().out


def test_cli_pairwise(env, tmp_path, capsys):
    url, run = env
    assert (
        main(
            [
                "--db",
                url,
                "create",
                str(run),
                "--study-id",
                "pw",
                "--mode",
                "pairwise",
                "--methods",
                "pynet,identity",
                "--items-per-session",
                "4",
                "--min-view-ms",
                "0",
            ]
        )
        == 0
    )
    _simulate(url, tmp_path, "pw", n_raters=8)
    assert main(["--db", url, "aggregate", "pw", "--out", str(tmp_path / "pw")]) == 0
    table = pd.read_csv(tmp_path / "pw" / "pairwise.csv")
    row = table.iloc[0]
    assert (row["method_a"], row["method_b"]) == ("pynet", "identity")
    assert row["n"] == 32 and 0.6 < row["share_a"] <= 1.0 and row["ci_low"] < row["share_a"] < row["ci_high"]
    bt = pd.read_csv(tmp_path / "pw" / "bradley_terry.csv")
    assert bt["method"].iloc[0] == "pynet"
