"""The evaluation portal: scoring through evaluation/run.py, the results repo (stand-in Hub API),
the leaderboard, withdraw/hide with an audit log, the CLI and the bridge to the user study."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _portal_testing import (
    ALICE,
    META,
    REPO,
    VAL_IDS,
    FakeHubApi,
    build_val294_like,
    good_zip,
    make_portal,
    portal_leftovers,
    prediction_arrays,
    write_folder,
    write_zip,
)

from bokeh_model.lpips_trunk import ALEXNET_FILE
from bokeh_model.registry import Method, registered_methods
from evaluation.portal import (
    DuplicateSubmission,
    Portal,
    PortalError,
    PortalSettings,
    SubmissionMeta,
    Submitter,
)
from evaluation.portal.board import BOARD_COLUMNS
from evaluation.run import main as run_main
from evaluation.submit import main as submit_main


class _Shift(Method):
    """Test-only method without depth: the photo brightened a little."""

    name = "portal_test_shift"
    description = "test-only brightening"
    needs_depth = False

    def render(self, image, depth):
        return np.clip(image + 0.02, 0, 1)


@pytest.fixture(scope="module", autouse=True)
def _test_methods():
    """portal_test_shift is registered only while this module's tests run."""
    with registered_methods(_Shift):
        yield


@pytest.fixture(autouse=True)
def _no_lpips_trunk(tmp_path_factory, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path_factory.getbasetemp() / "empty-hub"))
    monkeypatch.delenv("BOKEH_ORGANIZER_TOKEN", raising=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_val294_like(tmp_path_factory.mktemp("ebb"))


@pytest.fixture(scope="module")
def arrays(dataset) -> dict[str, np.ndarray]:
    return prediction_arrays(dataset)


# ------------------------------------------------------------------------------------------- scoring


def test_good_submission_scored_under_both_profiles_equals_run_py(tmp_path, dataset, arrays, capsys):
    api = FakeHubApi()
    portal = make_portal(tmp_path, dataset, api)
    archive = good_zip(tmp_path / "preds.zip", arrays)
    sub_id = portal.submit(archive, META, ALICE)
    assert portal.status(sub_id)["status"] == "queued"
    assert portal.process_next() == sub_id
    status = portal.status(sub_id)
    assert status["status"] == "scored" and status["progress"] == 1.0, status

    # The same files through `evaluation/run.py --predictions` give the same numbers under each profile.
    reference = write_folder(tmp_path / "reference", arrays)
    for profile in ("pynet", "dmshn"):
        out = tmp_path / f"ref-{profile}"
        argv = ["--dataset", str(dataset), "--split", "val294", "--methods", "none"]
        argv += ["--predictions", f"ref={reference}", "--profile", profile, "--out", str(out), "--device", "cpu"]
        assert run_main(argv) == 0
        expected = json.loads((out / "run.json").read_text())
        result = portal.store.result(sub_id, profile)
        for metric in ("psnr", "ssim"):
            assert result["summary"]["metrics"][metric] == expected["methods"]["ref"]["metrics"][metric]
        assert result["profile"] == profile and result["run"]["profile"] == profile
        assert result["dataset_fingerprint"] == expected["dataset"]["fingerprint"]["sha256"]
        assert result["submission_sha256"] == portal.store.submission(sub_id)["sha256"]
        assert {"python", "torch", "numpy"} <= set(result["run"]["versions"])
        assert not result["run"]["lpips"]["available"]  # no AlexNet trunk here: LPIPS n/a with the reason
        board, paper, notes = portal.leaderboard(profile)
        row = board[board["Id"] == sub_id].iloc[0]
        assert row["Method"] == "TestNet" and row["Uses depth"] == "yes" and row["Hardware"] == "RTX 4090"
        assert row["PSNR ↑"] == f"{expected['methods']['ref']['metrics']['psnr']['mean']:.2f}"
        assert row["SSIM ↑"] == f"{expected['methods']['ref']['metrics']['ssim']['mean']:.4f}"
        assert row["LPIPS ↓"] == "n/a"
        assert len(paper) == 6 and (paper["Source"].str.contains("reported in paper")).all()
    # the two profiles give different numbers (no crop vs a 32 px crop; different SSIM windows)
    assert portal.store.result(sub_id, "pynet")["summary"] != portal.store.result(sub_id, "dmshn")["summary"]

    # Published: the stand-in Hub holds the record, both results and the audit trail ...
    pushed = api.list_repo_files(REPO, repo_type="dataset")
    assert f"submissions/{sub_id}.json" in pushed
    assert {f"results/{sub_id}/pynet.json", f"results/{sub_id}/dmshn.json"} <= set(pushed)
    assert sum(p.startswith("audit/") for p in pushed) == 2  # submitted, scored
    record = json.loads(api.files[(REPO, f"submissions/{sub_id}.json")])
    assert record["status"] == "scored" and record["submitter"]["username"] == "alice"
    assert len(record["sha256"]) == 64 and len(record["archive_sha256"]) == 64
    # ... and a fresh portal (a restarted Space with an empty disk) reads the leaderboard back from it.
    fresh = make_portal(tmp_path / "fresh", dataset, api)
    board, _, _ = fresh.leaderboard("dmshn")
    assert board["Id"].tolist() == [sub_id]
    # bulky copies of the run are gone; the run's table files and one copy of the targets are kept
    work = portal.root / "work" / sub_id / "pynet"
    assert (work / "run.json").is_file() and not (work / "predictions").exists()
    assert sorted(p.stem for p in (portal.root / "targets" / "val294").iterdir()) == list(VAL_IDS)


def test_folder_and_zip_of_the_same_files_have_the_same_sha256(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset, per_day=5)
    folder = write_folder(tmp_path / "folder", arrays)
    first = portal.submit(folder, META, ALICE)
    portal.process_next()
    second = portal.submit(good_zip(tmp_path / "p.zip", arrays, prefix=""), META, ALICE)
    one, two = portal.store.submission(first), portal.store.submission(second)
    assert one["sha256"] == two["sha256"] and one["archive_sha256"] is None


def test_background_worker_scores_and_reports_progress(tmp_path, dataset, arrays):
    import time

    portal = make_portal(tmp_path, dataset)
    portal.start_worker(poll_s=0.2)
    try:
        sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
        seen = []
        deadline = time.time() + 120
        while time.time() < deadline:
            status = portal.status(sub_id)
            seen.append((status["status"], round(status["progress"], 3)))
            if status["status"] in ("scored", "failed"):
                break
            time.sleep(0.05)
    finally:
        portal.stop_worker()
    assert seen[-1] == ("scored", 1.0), seen[-5:]
    progress = [p for _, p in seen]
    assert progress == sorted(progress)  # never goes backwards


def test_a_job_left_running_by_a_crash_is_queued_again(tmp_path, dataset, arrays):
    from evaluation.portal.queue import JobQueue

    portal = make_portal(tmp_path, dataset)
    sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    assert portal.queue.claim().id == sub_id  # "running" when the process dies
    assert JobQueue(portal.root / "queue.db").get(sub_id).status == "queued"


def test_lpips_is_computed_when_the_trunk_is_present(tmp_path, dataset, arrays, monkeypatch):
    """Plumbing only: a random stand-in AlexNet trunk; its values are meaningless and never reported."""
    import torch
    import torchvision

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), hub / "checkpoints" / ALEXNET_FILE)
    # the stand-in is not torchvision's file: refused by default (the submission fails), accepted when allowed
    refused = make_portal(tmp_path / "strict", dataset)
    refused_id = refused.submit(good_zip(tmp_path / "strict.zip", arrays), META, ALICE)
    refused.process_next()
    assert refused.queue.get(refused_id).status == "failed"
    assert "unofficial" in refused.queue.get(refused_id).message.lower()
    portal = make_portal(tmp_path, dataset, allow_unofficial_lpips=True)
    sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    portal.process_next()
    for profile in ("pynet", "dmshn"):
        result = portal.store.result(sub_id, profile)
        assert result["run"]["lpips"]["available"] and result["summary"]["metrics"]["lpips"]["n"] == len(VAL_IDS)
    board, _, _ = portal.leaderboard("pynet", sort_by="lpips")
    assert board.loc[0, "LPIPS ↓"] != "n/a"


# ------------------------------------------------------------------------------------------- checks


# ------------------------------------------------------------------------------------------- users and limits


def test_one_pending_submission_per_user_and_a_rate_limit(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset, per_day=2)
    archive = good_zip(tmp_path / "p.zip", arrays)
    first = portal.submit(archive, META, ALICE)
    with pytest.raises(DuplicateSubmission) as caught:  # the same archive again (a double click)
        portal.submit(archive, META, ALICE)
    assert caught.value.sub_id == first
    # two requests that raced past the first check: the queue's own check recognises the same files
    real_check = portal.queue.check_user
    portal.queue.check_user = lambda *args, **kwargs: None
    with pytest.raises(DuplicateSubmission) as caught:
        portal.submit(write_folder(tmp_path / "same-files", arrays), META, ALICE)
    portal.queue.check_user = real_check
    assert caught.value.sub_id == first
    with pytest.raises(PortalError, match="already have a submission waiting"):
        portal.submit(good_zip(tmp_path / "other.zip", arrays, prefix=""), META, ALICE)
    assert len(list((portal.root / "predictions").iterdir())) == 1  # the refused one left nothing
    portal.submit(archive, META, Submitter("bob"))  # another user is not blocked
    portal.process_next()
    portal.process_next()
    portal.submit(archive, META, ALICE)
    portal.process_next()
    with pytest.raises(PortalError, match="rate limit: 2 submissions per 24 hours"):
        portal.submit(archive, META, ALICE)
    portal.submit(archive, META, Submitter("organizer", via="organizer"))  # organizers are exempt


def test_metadata_is_validated(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset)
    archive = good_zip(tmp_path / "p.zip", arrays)
    bad = SubmissionMeta(method=" ", authors="", license="MIT", link="javascript:alert(1)", runtime_s=-1)
    with pytest.raises(PortalError) as caught:
        portal.submit(archive, bad, ALICE)
    for word in ("method is required", "authors is required", "http(s) URL", "non-negative"):
        assert word in str(caught.value)
    with pytest.raises(PortalError, match="not open for submissions"):
        portal.submit(archive, META, ALICE, split="train")
    unconfigured = Portal(PortalSettings(root=tmp_path / "none"))
    with pytest.raises(PortalError, match="BOKEH_PORTAL_DATASET"):
        unconfigured.submit(archive, META, ALICE)
    assert portal_leftovers(portal) == []


def test_withdraw_hide_unhide_with_an_audit_log(tmp_path, dataset, arrays):
    api = FakeHubApi()
    portal = make_portal(tmp_path, dataset, api)
    sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    portal.process_next()
    bob_id = portal.submit(
        good_zip(tmp_path / "p.zip", arrays), SubmissionMeta("BobNet", "Bob", "MIT"), Submitter("bob")
    )
    portal.process_next()
    assert set(portal.leaderboard("pynet")[0]["Id"]) == {sub_id, bob_id}

    with pytest.raises(PortalError, match="another user"):
        portal.withdraw(sub_id, Submitter("bob"))
    portal.withdraw(sub_id, ALICE)
    assert portal.leaderboard("pynet")[0]["Id"].tolist() == [bob_id]

    with pytest.raises(PortalError, match="wrong organizer token"):
        portal.hide(bob_id, "copied predictions", "guess")
    with pytest.raises(PortalError, match="give a reason"):
        portal.hide(bob_id, "  ", "org-secret")
    portal.hide(bob_id, "predictions copied from another entry", "org-secret")
    assert portal.leaderboard("pynet")[0].empty
    portal.unhide(bob_id, "appeal accepted", "org-secret")
    assert portal.leaderboard("pynet")[0]["Id"].tolist() == [bob_id]

    events = [(e["event"], e["submission"]) for e in portal.store.audit_log()]
    assert ("withdrawn", sub_id) in events and ("hidden", bob_id) in events and ("unhidden", bob_id) in events
    hidden = next(e for e in portal.store.audit_log(bob_id) if e["event"] == "hidden")
    assert hidden["reason"] == "predictions copied from another entry"
    # never deleted: the withdrawn submission and its results stay in the repo
    assert (REPO, f"results/{sub_id}/pynet.json") in api.files
    assert json.loads(api.files[(REPO, f"submissions/{sub_id}.json")])["visibility"] == "withdrawn"


def test_withdrawing_a_queued_submission_cancels_it(tmp_path, dataset, arrays):
    portal = make_portal(tmp_path, dataset)
    sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    portal.withdraw(sub_id, ALICE)
    assert portal.process_next() is None and portal.status(sub_id)["status"] == "cancelled"
    portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)  # no longer pending


def test_leaderboard_sort_and_filters(tmp_path, dataset):
    portal = make_portal(tmp_path, dataset, per_day=10)
    close = prediction_arrays(dataset, shift=2)
    far = prediction_arrays(dataset, shift=30)
    a = portal.submit(
        write_folder(tmp_path / "close", close), SubmissionMeta("Close", "A", "MIT", hardware="A100"), ALICE
    )
    portal.process_next()
    b = portal.submit(
        write_folder(tmp_path / "far", far),
        SubmissionMeta("Far", "B", "MIT", hardware="CPU i7", runtime_s=0.01, uses_depth=True),
        Submitter("bob"),
    )
    portal.process_next()
    assert portal.leaderboard("pynet", sort_by="psnr")[0]["Id"].tolist() == [a, b]
    assert portal.leaderboard("pynet", sort_by="runtime")[0]["Id"].tolist() == [b, a]  # no runtime goes last
    assert portal.leaderboard("dmshn", uses_depth="yes")[0]["Id"].tolist() == [b]
    assert portal.leaderboard("dmshn", uses_depth="no")[0]["Id"].tolist() == [a]
    assert portal.leaderboard("pynet", hardware="a100")[0]["Id"].tolist() == [a]
    with pytest.raises(PortalError):
        portal.leaderboard("tf")


def test_measured_rows_only_on_the_same_data_and_profile(tmp_path, dataset, arrays):
    measured = tmp_path / "measured"
    argv = ["--dataset", str(dataset), "--split", "val294", "--methods", "portal_test_shift", "--profile", "dmshn"]
    assert run_main([*argv, "--out", str(measured), "--device", "cpu", "--warmup", "0"]) == 0
    portal = make_portal(tmp_path, dataset, measured_dir=measured)
    portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    portal.process_next()
    board, _, _ = portal.leaderboard("dmshn")
    assert set(board["Method"]) == {"TestNet", "portal_test_shift"}
    measured_row = board[board["Method"] == "portal_test_shift"].iloc[0]
    assert measured_row["Source"].startswith("measured") and measured_row["Uses depth"] == "no"
    board, _, notes = portal.leaderboard("pynet")
    assert set(board["Method"]) == {"TestNet"} and any("switch profile" in n for n in notes)


def test_a_failed_push_is_retried_and_nothing_is_lost(tmp_path, dataset, arrays):
    api = FakeHubApi()
    portal = make_portal(tmp_path, dataset, api)
    api.fail_next = True
    sub_id = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    assert portal.store.last_push_error and "did not answer" in portal.store.last_push_error
    assert (REPO, f"submissions/{sub_id}.json") not in api.files
    portal.process_next()  # the next publish pushes everything still pending
    assert portal.store.last_push_error is None
    assert (REPO, f"submissions/{sub_id}.json") in api.files and (REPO, f"results/{sub_id}/dmshn.json") in api.files


# ------------------------------------------------------------------------------------------- command line


def test_cli_submit_wait_leaderboard_and_refusal(tmp_path, dataset, arrays, capsys, monkeypatch):
    monkeypatch.setenv("BOKEH_ORGANIZER_TOKEN", "org-secret")
    base = ["--portal-dir", str(tmp_path / "portal"), "--dataset", str(dataset), "--token", "org-secret"]
    archive = good_zip(tmp_path / "p.zip", arrays)
    info = ["--method", "CliNet", "--authors", "C. Li", "--license", "CC BY 4.0", "--runtime", "0.2", "--user", "carol"]
    assert submit_main([*base, "submit", str(archive), *info, "--wait"]) == 0
    out = capsys.readouterr().out
    assert "accepted and queued" in out and "scored" in out and "pynet: PSNR" in out and "dmshn: PSNR" in out

    assert submit_main([*base, "leaderboard", "--profile", "dmshn", "--csv", str(tmp_path / "b.csv")]) == 0
    assert "CliNet" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "b.csv")["Method"].tolist() == ["CliNet"]

    bomb = write_zip(tmp_path / "bomb.zip", {"4400.png": b"\0" * 30_000_000})
    assert submit_main([*base, "submit", str(bomb), *info]) == 2
    err = capsys.readouterr().err
    assert "Zip bomb" in err and "4400.png" in err
    wrong = [a if a != "org-secret" else "nope" for a in base]
    assert submit_main([*wrong, "submit", str(archive), *info]) == 2
    assert "wrong organizer token" in capsys.readouterr().err
    assert submit_main([*base, "status", "no-such-id"]) == 2
    with pytest.raises(SystemExit) as caught:
        submit_main(["--help"])
    assert caught.value.code == 0


def test_study_bridge_creates_a_mos_study_from_submissions(tmp_path, dataset, arrays, capsys, monkeypatch):
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "data"))
    portal = make_portal(tmp_path, dataset, per_day=5)
    one = portal.submit(good_zip(tmp_path / "p.zip", arrays), META, ALICE)
    portal.process_next()
    two = portal.submit(
        write_folder(tmp_path / "far", prediction_arrays(dataset, shift=30)),
        SubmissionMeta("Other Net", "B", "MIT"),
        Submitter("bob"),
    )
    portal.process_next()
    db = f"sqlite:///{tmp_path / 'study.db'}"
    base = ["--portal-dir", str(portal.root), "--dataset", str(dataset)]
    run = tmp_path / "portal-mos"
    assert submit_main([*base, "study", one, two, "--out", str(run)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["Other_Net", "TestNet"]
    mapping = json.loads((run / "methods.json").read_text())["methods"]
    assert mapping["TestNet"]["submission"] == one
    # the printed follow-up command, run as printed (plus options of user_study create), makes the study
    follow_up = [line for line in out.splitlines() if line.startswith("python -m user_study create ")]
    assert len(follow_up) == 1 and shlex.split(follow_up[0])[4:] == [str(run), "--study-id", "portal-mos"]
    from user_study.__main__ import main as study_main

    words = shlex.split(follow_up[0])[3:]  # create DIR --study-id ID
    assert study_main(["--db", db, *words, "--items-per-session", "4"]) == 0, capsys.readouterr().err
    assert "created study portal-mos" in capsys.readouterr().out
    assert study_main(["--db", db, "status", "portal-mos"]) == 0  # the study CLI knows the study and its methods
    status = capsys.readouterr().out
    assert "TestNet" in status and "Other_Net" in status
    # an unscored or unknown submission is refused before anything is written
    assert submit_main([*base, "study", "nope", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_space_form_off_a_space_needs_the_organizer_token(tmp_path, dataset):
    from space.submit_tab import _board_view, _submitter

    portal = make_portal(tmp_path, dataset)
    with pytest.raises(PortalError, match="wrong organizer token"):
        _submitter(None, False, "guess", "Carol", portal)
    with pytest.raises(PortalError, match="submitter's name"):
        _submitter(None, False, "org-secret", "  ", portal)
    assert _submitter(None, False, "org-secret", "Carol", portal) == Submitter("Carol", "Carol", via="organizer")
    with pytest.raises(PortalError, match="sign in"):
        _submitter(None, True, "", "", portal)
    # user text on the page: markdown and HTML are escaped, the link is the validated URL
    frame = pd.DataFrame([{**dict.fromkeys(BOARD_COLUMNS, ""), "Method": "<b>[x](y)</b>", "Link": "https://a.b/c(1)"}])
    shown = _board_view(frame)["Method"].item()
    assert "<b>" not in shown and shown.endswith("(https://a.b/c%281%29)")


def test_a_scoring_failure_is_recorded_and_the_queue_goes_on(tmp_path, dataset, arrays, monkeypatch):
    from bokeh_model.errors import InputError
    from evaluation.portal import service

    portal = make_portal(tmp_path, dataset, per_day=5)
    archive = good_zip(tmp_path / "p.zip", arrays)
    broken = portal.submit(archive, META, ALICE)
    fine = portal.submit(archive, META, Submitter("bob"))

    def fail(*args, **kwargs):
        raise InputError("prediction 4401.png cannot be read")

    with monkeypatch.context() as patch:
        patch.setattr(service, "score_with_evaluation", fail)
        assert portal.process_next() == broken
    assert portal.process_next() == fine
    status = portal.status(broken)
    assert status["status"] == "failed" and "4401.png cannot be read" in status["message"]
    assert portal.status(fine)["status"] == "scored"
    assert [e["event"] for e in portal.store.audit_log(broken)] == ["submitted", "failed"]
    assert portal.leaderboard("pynet")[0]["Id"].tolist() == [fine]
    portal.submit(archive, META, ALICE)  # a failed submission is no longer pending
