"""Pure functions of the user study: assignment planning, QC rules, MOS/CI/ranks, alpha, correlations, pairwise."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from user_study.aggregate import (
    MOS_COLUMNS,
    holm,
    item_mos,
    krippendorff_alpha,
    method_mos,
    metric_correlations,
    mos_with_subscript,
    paired_tests,
    reliability,
)
from user_study.assignment import Candidate, plan_session, spread_positions
from user_study.config import DEFAULT_SCALE_LABELS, StudyConfig
from user_study.pairwise import bradley_terry, pairwise_summary, pairwise_table, wilson_ci
from user_study.qc import apply_qc, bt500_screening, qc_decisions, rater_correlations
from user_study.report import safe_cell

# --------------------------------------------------------------------------- config


def test_config_labels_hash_and_validation():
    cfg = StudyConfig()
    assert cfg.scale_labels[0] == "almost identical" and cfg.scale_labels[4] == "mostly different"
    assert cfg.scale_labels == DEFAULT_SCALE_LABELS
    again = StudyConfig.from_dict(cfg.to_dict())
    assert again.sha256() == cfg.sha256()
    assert StudyConfig(items_per_session=5).sha256() != cfg.sha256()
    assert StudyConfig.from_dict({"qc": {"min_rater_corr": 0.5}}).qc["hidden_ref_max"] == 1
    with pytest.raises(ValueError, match="mode"):
        StudyConfig(mode="elo")
    with pytest.raises(ValueError, match="unknown study config keys"):
        StudyConfig.from_dict({"votes": 3})
    with pytest.raises(ValueError, match="items_per_session"):
        StudyConfig(items_per_session=0)
    with pytest.raises(ValueError, match="keys 0..4"):
        StudyConfig(scale_labels={0: "a", 4: "b"})


# --------------------------------------------------------------------------- assignment


def _cands(served=None):
    out = []
    for m in ("a", "b", "c"):
        for s in range(6):
            iid = f"{m}{s}"
            out.append(Candidate(iid, "test", s, m, (served or {}).get(iid, 0)))
    for s in range(6):
        out.append(Candidate(f"h{s}", "hidden_ref", s, None, 0))
        out.append(Candidate(f"g{s}", "gold", s, None, 0))
        out.append(Candidate(f"t{s}", "trap", s, None, 0))
    return out


def test_plan_session_balances_methods_and_spreads_controls():
    cands = _cands()
    by_id = {c.item_id: c for c in cands}
    slots = plan_session(
        cands,
        seen=set(),
        n_test=6,
        n_controls={"hidden_ref": 1, "gold": 1, "trap": 1},
        target_votes=5,
        rng=random.Random(1),
    )
    assert len(slots) == 9 and len({s.item_id for s in slots}) == 9
    tests = [by_id[s.item_id] for s in slots if by_id[s.item_id].kind == "test"]
    assert sorted(pd.Series([c.method for c in tests]).value_counts().tolist()) == [2, 2, 2]
    assert len({c.scene for c in tests}) == 6  # one method per scene
    kinds = [by_id[s.item_id].kind for s in slots]
    ctrl_pos = [i for i, k in enumerate(kinds) if k != "test"]
    assert [p // 3 for p in ctrl_pos] == [0, 1, 2]  # one control per third of the session
    swaps = [
        s.swap for s in plan_session(cands, seen=set(), n_test=18, n_controls={}, target_votes=5, rng=random.Random(2))
    ]
    assert 0 < sum(swaps) < len(swaps)


def test_plan_session_least_served_seen_and_target():
    served = {f"a{s}": 3 for s in range(6)} | {"b0": 5} | {f"b{s}": 2 for s in range(2, 6)}
    cands = _cands(served)
    slots = plan_session(cands, seen={"c0", "c1"}, n_test=2, n_controls={}, target_votes=5, rng=random.Random(0))
    ids = {s.item_id for s in slots}
    assert not ids & {"c0", "c1", "b0"}  # seen items and items at the target are never served
    # least-served first: methods b and c (less served) before a; within b the unserved b1
    assert "b1" in ids and next(i for i in ids if i != "b1")[0] == "c"
    four = {
        s.item_id[0]
        for s in plan_session(cands, seen=set(), n_test=3, n_controls={}, target_votes=5, rng=random.Random(0))
    }
    assert four == {"a", "b", "c"}  # but methods stay balanced within a session
    assert (
        plan_session(
            cands, seen={c.item_id for c in cands}, n_test=4, n_controls={}, target_votes=5, rng=random.Random(0)
        )
        == []
    )
    blocks = plan_session(
        _cands(), seen=set(), n_test=6, n_controls={}, target_votes=5, pairing="balanced_block", rng=random.Random(0)
    )
    scenes = pd.Series([s.item_id[1:] for s in blocks]).value_counts()
    assert scenes.tolist() == [3, 3]  # whole scenes: every method of two scenes
    with pytest.raises(ValueError, match="pairing"):
        plan_session(cands, seen=set(), n_test=1, n_controls={}, target_votes=1, pairing="x", rng=random.Random())
    assert sorted(spread_positions(10, 3, random.Random(0))) == sorted(set(spread_positions(10, 3, random.Random(0))))


# --------------------------------------------------------------------------- QC


def _ratings(rows):
    cols = [
        "rating_id",
        "rater_id",
        "item_id",
        "session_id",
        "kind",
        "score",
        "expected_score",
        "tolerance",
        "view_ms",
        "excluded",
        "exclusion_reason",
        "method",
        "scene",
    ]
    df = pd.DataFrame(rows, columns=cols)
    return df


def _session(sid, rater, test_scores, hidden=0, gold=4, trap=(2, 2), view=5000.0, start=0):
    rows = []
    for k, sc in enumerate(test_scores):
        m, scene = "abc"[k % 3], str(k // 3 + start)
        rows.append([f"{sid}-t{k}", rater, f"{m}{scene}", sid, "test", sc, None, None, view, False, "", m, scene])
    rows.append([f"{sid}-h", rater, "h", sid, "hidden_ref", hidden, 0, 1, view, False, "", None, "0"])
    rows.append([f"{sid}-g", rater, "g", sid, "gold", gold, 4, 1, view, False, "", None, "0"])
    rows.append([f"{sid}-x", rater, "x", sid, "trap", trap[0], trap[1], 0, view, False, "", None, "0"])
    return rows


def test_qc_rules_each_exclude_with_reason():
    good = [0, 2, 4, 1, 3, 0]
    rows = []
    rows += _session("s1", "ok1", good)
    rows += _session("s2", "ok2", [0, 2, 4, 1, 3, 1])
    rows += _session("s3", "ok3", [1, 2, 4, 0, 3, 0])
    rows += _session("s4", "hid", good, hidden=3)
    rows += _session("s5", "gold", good, gold=2)
    rows += _session("s6", "trap", good, trap=(1, 2))
    rows += _session("s7", "flat", [2, 2, 2, 2, 2, 2])
    rows += _session("s8", "anti", [4, 2, 0, 3, 1, 4])
    df = _ratings(rows)
    df.loc[df["rating_id"] == "s1-t0", ["excluded", "exclusion_reason"]] = [True, "organizer: duplicate account"]
    qc = StudyConfig().qc
    dec = qc_decisions(df, qc)
    failed = dec[dec["excluded"]]
    got = {(r.rule, r.target_id) for r in failed.itertuples()}
    assert ("hidden_ref", "s4") in got and ("gold", "s5") in got and ("trap", "s6") in got
    assert ("straight_lining", "s7") in got and ("rater_corr", "anti") in got and ("manual", "s1-t0") in got
    assert not any(t in {"s1", "s2", "s3"} for _, t in got if _ != "manual")
    flagged = apply_qc(df, dec)
    assert flagged.loc[flagged["rating_id"] == "s1-t0", "qc_reason"].item().startswith("manual:organizer")
    assert flagged.loc[flagged["rating_id"] == "s4-t1", "qc_reason"].item() == "session:hidden_ref"
    assert flagged.loc[flagged["rater_id"] == "anti", "qc_reason"].str.contains("rater:rater_corr").all()
    assert not flagged.loc[flagged["rater_id"] == "ok2", "qc_excluded"].any()
    assert len(flagged) == len(df)  # nothing dropped
    loose = dict(qc, min_session_variance=0, min_rater_corr=-1, trap_exact=False)
    assert not {"straight_lining", "rater_corr", "trap"} & set(qc_decisions(df, loose)["rule"])


def test_rater_corr_and_bt500():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 4, 20)
    rows = []
    for r in range(6):
        noisy = truth if r < 5 else 4 - truth
        for i in range(len(truth)):
            rows.append({"rater_id": f"r{r}", "item_id": f"i{i}", "score": float(np.clip(round(noisy[i]), 0, 4))})
    df = pd.DataFrame(rows)
    corr = rater_correlations(df).set_index("rater_id")
    assert corr.loc["r0", "r"] > 0.8 and corr.loc["r5", "r"] < 0 and corr.loc["r0", "n_items"] == 20
    bt = bt500_screening(df).set_index("rater_id")
    assert set(bt.columns) == {"p", "q", "n", "rejected"} and not bt.loc["r0", "rejected"]


# --------------------------------------------------------------------------- aggregation


def _used(seed=0, n_raters=12, scenes=8, effects=(0.5, 1.5, 1.6)):
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_raters):
        bias = rng.normal(0, 0.3)
        for s in range(scenes):
            for m, eff in zip(("good", "mid", "mid2"), effects, strict=True):
                score = int(np.clip(round(eff + bias + rng.normal(0, 0.5)), 0, 4))
                rows.append({"rater_id": f"r{r}", "item_id": f"{m}-{s}", "method": m, "scene": str(s), "score": score})
    return pd.DataFrame(rows)


def test_method_mos_ranks_and_bootstrap():
    used = _used()
    table = method_mos(used, rounds=300, seed=1)
    assert list(table.columns[: len(MOS_COLUMNS)]) == MOS_COLUMNS
    assert table["method"].iloc[0] == "good"  # lowest MOS is best
    assert table["rank"].tolist() == [1, 2, 3]
    assert (table["ci_low"] <= table["mos"]).all() and (table["mos"] <= table["ci_high"]).all()
    sig = dict(zip(table["method"], table["sig_rank"], strict=True))
    assert sig["good"] == 1 and sig["mid"] == 2 and sig["mid2"] == 2  # mid and mid2 not separable
    again = method_mos(used, rounds=300, seed=1)
    pd.testing.assert_frame_equal(table, again)  # same data + seed -> same table
    assert np.allclose(table.set_index("method")["mos"], used.groupby("method")["score"].mean())
    tie = method_mos(used.assign(method=used["method"].replace({"mid2": "mid"})), rounds=50)
    assert tie["n_ratings"].sum() == len(used)
    assert method_mos(used.iloc[:0]).empty


def test_item_mos_paired_tests_and_holm():
    used = _used()
    items = item_mos(used)
    assert len(items) == 24 and (items["n"] == 12).all()
    row = items.iloc[0]
    part = used[used["item_id"] == row["item_id"]]["score"]
    assert row["mos"] == pytest.approx(part.mean()) and row["ci95"] == pytest.approx(1.96 * part.std() / np.sqrt(12))
    tests = paired_tests(used).set_index(["method_a", "method_b"])
    assert tests.loc[("good", "mid"), "better"] == "good" and tests.loc[("good", "mid"), "p_holm"] < 0.05
    assert tests.loc[("mid", "mid2"), "better"] == ""
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_krippendorff_alpha_reference_values():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', 4 observers x 12 units example."""
    nan = np.nan
    data = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(data, "ratio") == pytest.approx(0.797, abs=5e-4)
    assert krippendorff_alpha(np.array([[1.0, 2.0], [1.0, 2.0]])) == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha(np.array([[1.0, nan], [nan, 2.0]])))
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(data, "cardinal")
    rel = reliability(_used())
    assert 0 < rel["alpha_interval"] < 1 and rel["n_raters"] == 12 and rel["n_items"] == 24


def test_metric_correlations_signs():
    items = item_mos(_used(effects=(0.3, 1.5, 3.0)))
    per_image = items[["method", "scene"]].rename(columns={"scene": "id"}).copy()
    per_image["psnr"] = 40 - 5 * items["mos"].to_numpy() + np.linspace(0, 0.1, len(items))
    per_image["lpips"] = 0.1 * items["mos"].to_numpy()
    corr = metric_correlations(items, per_image).set_index(["metric", "level"])
    assert corr.loc[("psnr", "item"), "spearman"] < -0.9 and corr.loc[("psnr", "item"), "agrees"]
    assert corr.loc[("lpips", "item"), "kendall"] > 0.9 and corr.loc[("lpips", "item"), "expected_sign"] == 1
    assert corr.loc[("psnr", "method"), "n"] == 3
    assert metric_correlations(items, pd.DataFrame()).empty


def test_formatting_helpers():
    assert mos_with_subscript(0.8712, 1) == "0.87₁"
    assert mos_with_subscript(1.0, 12, latex=True) == "$1.00_{12}$"
    assert safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and safe_cell("@x") == "'@x" and safe_cell("-2") == "'-2"
    assert safe_cell("pynet") == "pynet" and safe_cell(-2) == -2


# --------------------------------------------------------------------------- pairwise


def test_wilson_binomial_and_bradley_terry():
    lo, hi = wilson_ci(537, 1000)
    assert lo == pytest.approx(0.5060, abs=1e-3) and hi == pytest.approx(0.5677, abs=1e-3)
    assert wilson_ci(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and np.isnan(wilson_ci(0, 0)[0])
    with pytest.raises(ValueError):
        wilson_ci(5, 3)
    s = bradley_terry(np.array([[0, 7], [3, 0]]), prior=0.0)
    assert s[0] - s[1] == pytest.approx(np.log(7 / 3), abs=1e-6)
    rows = [
        {"rater_id": f"r{i % 7}", "method": "pynet", "method_b": "pixel", "score": 0 if i < 60 else 1}
        for i in range(100)
    ] + [{"rater_id": "r0", "method": "pynet", "method_b": "pixel", "score": 2}]
    table = pairwise_table(pd.DataFrame(rows)).iloc[0]
    assert (table["wins_a"], table["wins_b"], table["ties"], table["n"]) == (60, 40, 1, 100)
    assert table["share_a"] == pytest.approx(0.6) and table["p_binom"] == pytest.approx(0.0569, abs=1e-3)
    three = pd.DataFrame(
        [{"rater_id": f"r{i}", "method": "a", "method_b": "b", "score": 0} for i in range(8)]
        + [{"rater_id": f"r{i}", "method": "b", "method_b": "c", "score": 0} for i in range(8)]
        + [{"rater_id": f"r{i}", "method": "a", "method_b": "c", "score": int(i == 0)} for i in range(8)]
    )
    bt = pairwise_summary(three, rounds=30)
    assert bt["method"].tolist() == ["a", "b", "c"] and bt["rank"].tolist() == [1, 2, 3]
    assert (bt["ci_low"] <= bt["bt_score"]).all() and (bt["bt_score"] <= bt["ci_high"]).all()
