"""Load test of the user-study app: N concurrent simulated raters over HTTP (loopback only).

Starts the standalone study app (``user_study.ui.build_demo``) in a subprocess on 127.0.0.1, creates a
study from a synthetic run folder, then runs N rater threads. Each rater opens its session with ``/begin``
and submits every slot with ``/submit`` over Gradio's queue API. ``--client http`` (default): POST
``/gradio_api/call/<name>``, then its SSE stream, with one keep-alive connection and ``session_hash`` per
rater, like a browser tab; ``--client gradio_client``: the official client, heavier per call. A fraction of
submits is sent twice (double click). Prints ratings/s, p50/p95/max submit latency, and the lost /
duplicated counts, checked against the database after the run (both must be 0).

Raters look at each item for ``--think-ms`` (default 3 s, uniform 0.5-1.5x) before submitting;
``--think-ms 0`` is a back-to-back stress test. Reference in the same run: the same submits through
``StudyService`` directly (no HTTP, one thread), so the ratio shows what the web stack adds. Also printed:
CPU time of the app process per submit, a figure that does not depend on what else runs on the machine.
Target: 100 concurrent raters, p95 <= 300 ms.

    python benchmarks/study_load.py --raters 100 --items-per-session 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from user_study.config import StudyConfig  # noqa: E402
from user_study.service import StudyService  # noqa: E402
from user_study.testing import make_fake_run  # noqa: E402

__all__ = ["main"]

SECRET = "bench-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"app did not answer on port {port} within {timeout} s")


class _RestRater:
    """One simulated browser tab: Gradio's REST queue API (``/gradio_api/call/<name>``, then its SSE stream)
    with a fixed ``session_hash`` so the server keeps this rater's ``gr.State``."""

    def __init__(self, port: int) -> None:
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}/gradio_api", timeout=120)
        self.session_hash = uuid.uuid4().hex[:12]

    def __call__(self, name: str, *data: object) -> tuple:
        resp = self.http.post(f"/call/{name}", json={"data": list(data), "session_hash": self.session_hash})
        resp.raise_for_status()
        event_id = resp.json()["event_id"]
        event = None
        with self.http.stream("GET", f"/call/{name}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError(f"/{name} failed: {payload}")
                    return tuple(payload[1:])  # drop the gr.State output (sent as null)
        raise RuntimeError(f"/{name}: stream ended without a result")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _reference(db_url: str, data_dir: Path, study_id: str, n_raters: int) -> list[float]:
    """Direct service submits (no HTTP), one thread: the in-process cost of a validated, durable write."""
    svc = StudyService(db_url, rater_secret=SECRET, data_dir=data_dir)
    lat = []
    for r in range(n_raters):
        view = svc.begin(study_id, f"ref{r}")
        while not view.done and not view.finished:
            t0 = time.perf_counter()
            res = svc.submit(view.rater_id, view.slot_token, r % 5)
            lat.append(time.perf_counter() - t0)
            view = res.view
    svc.close()
    return lat


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 0 when nothing was lost or duplicated, 1 otherwise."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raters", type=int, default=100, help="concurrent simulated raters (default 100)")
    p.add_argument("--items-per-session", type=int, default=10, help="test items per session (+3 controls)")
    p.add_argument("--double-rate", type=float, default=0.1, help="share of submits sent twice (default 0.1)")
    p.add_argument(
        "--think-ms",
        type=float,
        default=3000,
        help="mean time a rater looks at an item before submitting (uniform 0.5-1.5x; default 3000, "
        "the study's default minimum viewing time); 0 = submit back-to-back (stress)",
    )
    p.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    p.add_argument(
        "--client",
        choices=["http", "gradio_client"],
        default="http",
        help="http: Gradio's REST queue API with httpx (light, like a browser tab; default); "
        "gradio_client: the official client (heavier per call)",
    )
    p.add_argument("--timeout", type=float, default=540, help="overall limit in seconds")
    args = p.parse_args(argv)
    if args.raters < 1 or args.items_per_session < 1 or not 0 <= args.double_rate <= 1:
        p.error("--raters and --items-per-session must be >= 1 and --double-rate in [0, 1]")

    from gradio_client import Client

    tmp = Path(tempfile.mkdtemp(prefix="study_load_"))
    data_dir = tmp / "data"
    db_url = args.db or f"sqlite:///{tmp / 'study.db'}"
    run = make_fake_run(
        tmp / "run", methods=("m1", "m2", "m3", "m4"), scenes=[str(i) for i in range(30)], size=(256, 192)
    )
    svc = StudyService(db_url, rater_secret=SECRET, data_dir=data_dir)
    cfg = StudyConfig(items_per_session=args.items_per_session, min_view_ms=0, target_votes_per_item=10_000)
    study_id = svc.create_study(run, cfg, study_id="load")
    ref_study = svc.create_study(run, cfg, study_id="ref")

    port = _free_port()
    env = {
        **os.environ,
        "BOKEH_DATA_DIR": str(data_dir),
        "BOKEH_RATER_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("BOKEH_STUDY_HUB_REPO", None)
    code = (
        "import sys; from user_study.ui import build_demo; "
        f"build_demo({db_url!r}).launch(server_name='127.0.0.1', server_port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t_start = time.time()
        _wait_http(port, proc)
        print(f"app up on 127.0.0.1:{port} after {time.time() - t_start:.1f} s")
        lat: list[float] = []
        acked: dict[str, int] = {}
        dup_ok = dup_bad = 0
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.time() + args.timeout
        ready = threading.Barrier(args.raters)

        def rater(i: int) -> None:
            nonlocal dup_ok, dup_bad
            rng = np.random.default_rng(i)
            try:
                if args.client == "gradio_client":
                    client = Client(f"http://127.0.0.1:{port}/", download_files=False, verbose=False)

                    def call(name: str, *data: object) -> tuple:
                        return client.predict(*data, api_name=f"/{name}")
                else:
                    call = _RestRater(port)
                ready.wait(timeout=300)
                out = call("begin", study_id, f"rater{i}", "link")
                slot, n = out[0], 0
                for _ in range(args.items_per_session + 10):  # bounded loop
                    if not slot or time.time() > deadline:
                        break
                    if args.think_ms > 0:  # looking at the images before answering
                        time.sleep(args.think_ms / 1000 * rng.uniform(0.5, 1.5))
                    t0 = time.perf_counter()
                    out = call("submit", int(rng.integers(0, 5)), slot)
                    dt_s = time.perf_counter() - t0
                    n += 1
                    if rng.random() < args.double_rate:
                        again = call("submit", int(rng.integers(0, 5)), slot)
                        with lock:
                            if again[0] == out[0]:  # nothing advanced: the repeat was not stored
                                dup_ok += 1
                            else:
                                dup_bad += 1
                    with lock:
                        lat.append(dt_s)
                    slot = out[0]
                with lock:
                    acked[f"rater{i}"] = n
            except Exception as exc:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"rater{i}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=rater, args=(i,), daemon=True) for i in range(args.raters)]
        server_cpu0, client_cpu0 = _cpu_seconds(proc.pid), time.process_time()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.time()))
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = _cpu_seconds(proc.pid) - server_cpu0, time.process_time() - client_cpu0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    frame = svc.ratings_frame(study_id)
    per_rater = frame.groupby("rater_id").size().to_dict()
    lost = sum(max(0, n - per_rater.get(svc.rater_id(r), 0)) for r, n in acked.items())
    extra = sum(max(0, per_rater.get(svc.rater_id(r), 0) - n) for r, n in acked.items())
    dup_pairs = int(frame.duplicated(["rater_id", "item_id"]).sum())
    ref = _reference(db_url, data_dir, ref_study, min(10, args.raters))
    svc.close()

    lat_ms = np.array(lat) * 1000
    ref_ms = np.array(ref) * 1000
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {version('torch')} (not used), "
        f"gradio {version('gradio')}, gradio_client {version('gradio_client')}, sqlalchemy {version('sqlalchemy')}"
    )
    print(f"device: CPU only, {os.cpu_count()} cores ({platform.machine()}), database {db_url.split(':')[0]}")
    print(
        f"raters: {args.raters} concurrent ({args.client}), {args.items_per_session}+3 slots each, think time "
        f"{args.think_ms:.0f} ms, double submits {args.double_rate:.0%}; completed raters {len(acked)}, "
        f"errors {len(errors)}"
    )
    for e in errors[:5]:
        print("  error:", e)
    if len(lat_ms):
        p50, p95 = np.percentile(lat_ms, [50, 95])
        print(
            f"submits: {len(lat_ms)} in {wall:.1f} s -> {len(lat_ms) / wall:.1f} ratings/s; latency p50 "
            f"{p50:.0f} ms, p95 {p95:.0f} ms, max {lat_ms.max():.0f} ms (target p95 <= 300 ms: "
            f"{'met' if p95 <= 300 else 'NOT met'})"
        )
        n_calls = len(lat_ms) + dup_ok + dup_bad + len(acked)  # submits, repeats and begins
        print(
            f"CPU: app process {server_cpu:.1f} s = {1000 * server_cpu / max(1, n_calls):.0f} ms per request "
            f"({n_calls} requests); simulated raters {client_cpu:.1f} s; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        rp50, rp95 = np.percentile(ref_ms, [50, 95])
        print(
            f"reference (StudyService.submit, no HTTP, 1 thread, {len(ref_ms)} submits): p50 {rp50:.1f} ms, "
            f"p95 {rp95:.1f} ms; HTTP/direct p50 ratio {p50 / rp50:.1f}x"
        )
    print(f"double submits not stored again: {dup_ok}, stored again: {dup_bad}")
    print(f"lost ratings: {lost}, duplicated ratings: {dup_pairs + extra}")
    ok = lost == 0 and dup_pairs == 0 and extra == 0 and dup_bad == 0 and not errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
