"""Load test of the rater API (/study-api/v1): simulated raters over HTTP on the loopback interface.

Starts the app in a subprocess, creates a study from a synthetic run folder and drives the JSON API the rater
page uses (``begin``, then ``submit`` per item, a new session when one is complete) from one asyncio client.
Three measurements:

1. **Crowd** (the target): ``--raters`` concurrent raters (default 100) who look at each item for
   ``--think-ms`` (default 3 s, uniform 0.5-1.5x) before submitting, arriving spread over the first look time;
   ``--double-rate`` of the submits are sent twice (double click). Prints ratings/s, p50/p95/max submit
   latency and checks against the database that no acknowledged rating is lost and none is stored twice.
   Target: p95 <= 150 ms.
2. **Capacity**: submits offered at fixed rates (open loop, ``--rates``, ``--step-s`` seconds each, idle
   raters picked at random); prints achieved ratings/s and p50/p95 per rate and the rate at which p95 crosses
   300 ms (aim: >= 150 ratings/s).
3. **PostgreSQL, 1 vs 2 app processes** (``--postgres``; needs the Debian ``postgresql`` binaries): the same
   capacity steps against ``uvicorn --workers 1`` and ``--workers 2`` behind one port, with the ratio of the
   highest rates served at p95 <= 300 ms.

``--server space`` (default) runs the Space's study app (Gradio Blocks with the rater routes mounted, as
deployed); ``--server api`` runs the rater API alone under uvicorn (``user_study.rater_api:create_rater_app``),
which is also what the multi-process measurement uses. Reference in the same run: the same submits through
``StudyService`` directly (no HTTP, one thread). CPU time of the app process(es) per request is printed as
well: unlike latencies it hardly depends on what else runs on the machine.

    python -m benchmarks.study_load                       # crowd + capacity, SQLite, the Space app
    python -m benchmarks.study_load --postgres            # + PostgreSQL with 1 and 2 uvicorn workers
    python -m benchmarks.study_load --quick               # a short smoke run (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np

from benchmarks._common import free_port
from user_study.config import StudyConfig  # noqa: E402
from user_study.service import StudyService  # noqa: E402
from user_study.testing import make_fake_run  # noqa: E402

__all__ = ["main"]

SECRET = "bench-secret"
API = "/study-api/v1"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (Linux /proc), 0.0 where unavailable."""
    try:
        import psutil

        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total
    except Exception:  # noqa: BLE001 - psutil missing or the process is gone
        return 0.0


class App:
    """The app under test in a subprocess: ``space`` (Gradio + rater routes) or ``api`` (uvicorn workers)."""

    def __init__(self, kind: str, db_url: str, data_dir: Path, workers: int = 1) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "BOKEH_DATA_DIR": str(data_dir),
            "BOKEH_RATER_SECRET": SECRET,
            "BOKEH_STUDY_DB": db_url,
            "GRADIO_ANALYTICS_ENABLED": "False",
            # every simulated rater comes from 127.0.0.1: lift the per-client abuse limits for the benchmark
            "BOKEH_STUDY_BEGIN_PER_MIN": "1000000",
            "BOKEH_STUDY_BEGIN_BURST": "1000000",
            "BOKEH_STUDY_MAX_NEW_SESSIONS": "1000000",
        }
        env.pop("BOKEH_STUDY_HUB_REPO", None)
        if kind == "space":
            code = (
                "from space.study_tab import build_demo; "
                f"build_demo({db_url!r}).launch(server_name='127.0.0.1', server_port={self.port}, quiet=True)"
            )
            cmd = [sys.executable, "-c", code]
        else:
            cmd = [
                sys.executable, "-m", "uvicorn", "--factory", "user_study.rater_api:create_rater_app",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
                "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        self.kind, self.workers = kind, workers

    def wait(self, timeout: float = 120) -> float:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}{API}/studies/load", timeout=2).status_code == 200:
                    return time.time() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"app did not answer on port {self.port} within {timeout} s")

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Tally:
    """What the client saw: latencies, acknowledged ratings per rater, double-submit outcomes, errors."""

    lat: list[float] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    dup_ok: int = 0
    dup_bad: int = 0
    begins: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)


async def _post(http: httpx.AsyncClient, url: str, body: dict, tally: Tally) -> tuple[httpx.Response, bool]:
    """POST once more when a kept-alive connection was closed by the server while idle (uvicorn's keep-alive
    timeout) just as the request went out, as a browser does; every call of the API is safe to repeat."""
    try:
        return await http.post(url, json=body), False
    except (httpx.ReadError, httpx.RemoteProtocolError):
        tally.retries += 1
        return await http.post(url, json=body), True


class Rater:
    """One simulated rater (a browser tab): its session and current item."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.view, self.busy = name, None, False
        # one connection per rater, like a browser tab (one shared pool of hundreds of connections cost the
        # client more CPU per request than the server spent on it)
        self.http = httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=2))

    async def begin(self, tally: Tally) -> None:
        http = self.http
        res, _ = await _post(http, f"{API}/begin", {"study": "load", "rater": self.name}, tally)
        tally.begins += 1
        if res.status_code != 200:
            raise RuntimeError(f"begin {res.status_code}: {res.text[:200]}")
        self.view = res.json()

    async def submit(self, tally: Tally, rng: random.Random, double_rate: float) -> float:
        http = self.http
        if self.view is None or self.view.get("done") or not self.view.get("left"):
            await self.begin(tally)
        view = self.view
        body = {"position": view["position"], "score": rng.randrange(5)}
        t0 = time.perf_counter()
        res, retried = await _post(http, f"{API}/sessions/{view['session']}/submit", body, tally)
        dt = time.perf_counter() - t0
        if res.status_code != 200:
            raise RuntimeError(f"submit {res.status_code}: {res.text[:200]}")
        out = res.json()
        # after a retry, "duplicate" means the first attempt was stored: still exactly one acknowledged rating
        if out.get("status") == "recorded" or (retried and out.get("status") == "duplicate"):
            tally.acked[self.name] = tally.acked.get(self.name, 0) + 1
        if rng.random() < double_rate:
            again, _ = await _post(http, f"{API}/sessions/{view['session']}/submit", body, tally)
            if again.status_code == 200 and again.json().get("status") == "duplicate":
                tally.dup_ok += 1
            else:
                tally.dup_bad += 1
        self.view = out
        tally.lat.append(dt)
        return dt


async def _crowd(url: str, n: int, think_ms: float, duration: float, double_rate: float, tag: str) -> Tally:
    """Closed loop: ``n`` raters, each thinking ``think_ms`` (0.5-1.5x) before every submit."""
    tally = Tally()
    deadline = time.perf_counter() + duration

    async def one(i: int) -> None:
        rng = random.Random(i)
        rater = Rater(f"{tag}-{i}", url)
        try:
            # arrivals spread over the first look time, as a crowd trickles in (not 100 starts in one instant)
            await asyncio.sleep(think_ms / 1000 * rng.random())
            await rater.begin(tally)
            while time.perf_counter() < deadline:
                if think_ms > 0:
                    await asyncio.sleep(think_ms / 1000 * rng.uniform(0.5, 1.5))
                if time.perf_counter() >= deadline:
                    break
                await rater.submit(tally, rng, double_rate)
        except Exception as exc:  # noqa: BLE001 - reported
            tally.errors.append(f"{rater.name}: {type(exc).__name__}: {exc}")
        finally:
            await rater.http.aclose()

    await asyncio.gather(*(one(i) for i in range(n)))
    return tally


async def _capacity(
    url: str, rates: list[float], step_s: float, pool: int, tag: str, cpu: Callable[[], float]
) -> list[dict]:
    """Open loop: submits offered at each rate in turn (to idle raters); stops after p95 passes 1 s.
    ``cpu`` reads the app's CPU seconds, so each step reports CPU per submit (the pool's starts excluded)."""
    rows = []
    tally0 = Tally()
    raters = [Rater(f"{tag}-{i}", url) for i in range(pool)]
    await asyncio.gather(*(r.begin(tally0) for r in raters))
    try:
        for rate in rates:
            tally = Tally()
            rng = random.Random(int(rate))
            tasks = []

            async def fire(r: Rater, tally: Tally = tally, rng: random.Random = rng) -> None:
                try:
                    await r.submit(tally, rng, 0.0)
                except Exception as exc:  # noqa: BLE001 - reported
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    r.busy = False

            cpu0, t0, client0 = cpu(), time.perf_counter(), time.process_time()
            n_offered = skipped = 0
            while (now := time.perf_counter()) < t0 + step_s:
                due = t0 + n_offered / rate
                if due > now:
                    await asyncio.sleep(due - now)
                n_offered += 1
                idle = [r for r in rng.sample(raters, min(8, pool)) if not r.busy]
                if not idle:
                    skipped += 1  # every sampled rater still waits for an answer: the server is saturated
                    continue
                idle[0].busy = True
                tasks.append(asyncio.create_task(fire(idle[0])))
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - t0
            cpu_ms = 1000 * (cpu() - cpu0) / max(1, len(tally.lat))
            client_ms = 1000 * (time.process_time() - client0) / max(1, len(tally.lat))
            lat = np.array(tally.lat) * 1000
            p50, p95 = np.percentile(lat, [50, 95]) if len(lat) else (float("nan"),) * 2
            rows.append(
                {"offered": rate, "achieved": len(lat) / wall, "p50": p50, "p95": p95, "skipped": skipped,
                 "errors": len(tally.errors), "n": len(lat), "cpu_ms": cpu_ms,
                 "client_ms": client_ms}
            )  # fmt: skip
            if p95 > 1000 or skipped > n_offered * 0.2:
                break
    finally:
        await asyncio.gather(*(r.http.aclose() for r in raters))
    return rows


def _crossing(rows: list[dict], limit_ms: float = 300.0) -> str:
    """The achieved ratings/s where p95 crosses ``limit_ms`` (linear between the steps around it)."""
    below = [r for r in rows if r["p95"] <= limit_ms]
    above = [r for r in rows if r["p95"] > limit_ms]
    if not above:
        return (
            f">= {max(r['achieved'] for r in rows):.0f} ratings/s (p95 stayed <= {limit_ms:.0f} ms up to the last step)"
        )
    if not below:
        return f"< {above[0]['achieved']:.0f} ratings/s (p95 above {limit_ms:.0f} ms at the first step)"
    a, b = below[-1], above[0]
    f = (limit_ms - a["p95"]) / max(1e-9, b["p95"] - a["p95"])
    return f"~{a['achieved'] + f * (b['achieved'] - a['achieved']):.0f} ratings/s"


def _best_under(rows: list[dict], limit_ms: float = 300.0) -> float:
    ok = [r["achieved"] for r in rows if r["p95"] <= limit_ms]
    return max(ok) if ok else 0.0


def _print_steps(rows: list[dict]) -> None:
    for r in rows:
        print(
            f"  offered {r['offered']:6.0f}/s -> achieved {r['achieved']:6.1f} ratings/s, p50 {r['p50']:6.1f} ms, "
            f"p95 {r['p95']:7.1f} ms, CPU per submit: app {r['cpu_ms']:.1f} ms, client {r['client_ms']:.1f} ms "
            f"({r['n']} submits, {r['skipped']} not "
            f"sent: all sampled raters busy, {r['errors']} errors)"
        )


def _check(svc: StudyService, tally: Tally) -> tuple[int, int]:
    """(lost, duplicated): acknowledged ratings missing from the database, and (rater, item) stored twice."""
    frame = svc.ratings_frame("load")
    per_rater = frame.groupby("rater_id").size().to_dict()
    lost = sum(max(0, n - per_rater.get(svc.rater_id(r), 0)) for r, n in tally.acked.items())
    extra = sum(max(0, per_rater.get(svc.rater_id(r), 0) - n) for r, n in tally.acked.items())
    dup_pairs = int(frame.duplicated(["rater_id", "item_id"]).sum())
    return lost, dup_pairs + extra + tally.dup_bad


def _reference(svc: StudyService, n: int = 200) -> np.ndarray:
    """Direct service submits (no HTTP), one thread: the in-process cost of a validated, durable write."""
    lat = []
    view = svc.begin("ref", "ref-rater")
    k = 0
    while len(lat) < n:
        if view.done or view.finished:
            k += 1
            view = svc.begin("ref", f"ref-rater-{k}")
        t0 = time.perf_counter()
        view = svc.submit(view.rater_id, view.slot_token, len(lat) % 5).view
        lat.append(time.perf_counter() - t0)
    return np.array(lat) * 1000


def _setup(tmp: Path, db_url: str) -> StudyService:
    run = tmp / "run"
    if not run.exists():
        make_fake_run(run, methods=("m1", "m2", "m3", "m4"), scenes=[str(i) for i in range(60)], size=(256, 192))
    svc = StudyService(db_url, rater_secret=SECRET, data_dir=tmp / "data")
    # min_view_ms=0: simulated raters submit on their own schedule; the check itself still runs per submit
    cfg = StudyConfig(
        items_per_session=30, min_view_ms=0, target_votes_per_item=1_000_000, max_sessions_per_rater=10_000
    )
    svc.create_study(run, cfg, study_id="load")
    svc.create_study(run, cfg, study_id="ref")
    return svc


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 0 when nothing was lost or duplicated and no request failed, else 1."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raters", type=int, default=100, help="concurrent raters in the crowd run (default 100)")
    p.add_argument("--think-ms", type=float, default=3000, help="mean look time per item (default 3000 ms)")
    p.add_argument("--duration", type=float, default=60, help="seconds of the crowd run (default 60)")
    p.add_argument("--double-rate", type=float, default=0.1, help="share of submits sent twice (default 0.1)")
    p.add_argument(
        "--rates",
        default="50,100,150,200,250,300,400,500",
        help="offered ratings/s of the capacity steps, comma-separated (default 50,...,500)",
    )
    p.add_argument("--step-s", type=float, default=15, help="seconds per capacity step (default 15)")
    p.add_argument("--pool", type=int, default=200, help="raters available to the capacity steps (default 200)")
    p.add_argument("--server", choices=["space", "api"], default="space", help="app under test (see above)")
    p.add_argument("--postgres", action="store_true", help="also PostgreSQL with 1 and 2 uvicorn workers")
    p.add_argument("--skip-capacity", action="store_true", help="only the crowd run")
    p.add_argument("--quick", action="store_true", help="short run: 20 raters, 10 s, two capacity steps")
    args = p.parse_args(argv)
    if args.quick:
        args.raters, args.duration, args.rates, args.step_s, args.pool = 20, 10, "25,50", 5, 40
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        p.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if args.raters < 1 or not rates or min(rates) <= 0 or not 0 <= args.double_rate <= 1 or args.duration <= 0:
        p.error("--raters and --duration must be > 0, --rates positive, --double-rate in [0, 1]")

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, gradio {version('gradio')}, fastapi "
        f"{version('fastapi')}, uvicorn {version('uvicorn')}, httpx {httpx.__version__}, sqlalchemy "
        f"{version('sqlalchemy')}; torch not used"
    )
    extras = [m for m in ("httptools", "uvloop") if _has(m)]
    print(
        f"device: CPU only, {os.cpu_count()} cores ({platform.machine()}), load average {os.getloadavg()[0]:.1f} "
        f"before the run; server extras: {', '.join(extras) or 'none (pure-Python HTTP parser, asyncio loop)'}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="study_load_"))
    ok = True

    # ---------------------------------------------------------------- SQLite, one process
    db_url = f"sqlite:///{tmp / 'study.db'}"
    svc = _setup(tmp, db_url)
    app = App(args.server, db_url, tmp / "data")
    try:
        print(f"\n[SQLite, one app process: {args.server}] up after {app.wait():.1f} s")
        cpu0 = app.cpu()
        t0 = time.perf_counter()
        tally = asyncio.run(_crowd(app.url, args.raters, args.think_ms, args.duration, args.double_rate, "crowd"))
        wall = time.perf_counter() - t0
        cpu = app.cpu() - cpu0
        lat = np.array(tally.lat) * 1000
        lost, dup = _check(svc, tally)
        ok &= lost == 0 and dup == 0 and not tally.errors
        p50, p95 = np.percentile(lat, [50, 95]) if len(lat) else (float("nan"),) * 2
        n_req = len(lat) + tally.dup_ok + tally.dup_bad + tally.begins
        print(
            f"crowd: {args.raters} raters, think {args.think_ms:.0f} ms, {args.duration:.0f} s, double submits "
            f"{args.double_rate:.0%}: {len(lat)} ratings, {len(lat) / wall:.1f} ratings/s; submit latency p50 "
            f"{p50:.1f} ms, p95 {p95:.1f} ms, max {lat.max() if len(lat) else float('nan'):.0f} ms (target p95 <= "
            f"150 ms: {'met' if p95 <= 150 else 'NOT met'}); lost {lost}, duplicated {dup}, errors "
            f"{len(tally.errors)}, resent after a closed keep-alive connection {tally.retries}"
        )
        for e in tally.errors[:5]:
            print("  error:", e)
        print(f"  app CPU {cpu:.1f} s = {1000 * cpu / max(1, n_req):.2f} ms per request ({n_req} requests)")
        if not args.skip_capacity:
            rows = asyncio.run(_capacity(app.url, rates, args.step_s, args.pool, "cap", app.cpu))
            print(f"capacity (open loop, {args.step_s:.0f} s per step, {args.pool} raters):")
            _print_steps(rows)
            print(f"  p95 crosses 300 ms at {_crossing(rows)} (aim >= 150)")
            ok &= all(r["errors"] == 0 for r in rows)
    finally:
        app.stop()
    ref = _reference(svc)
    print(
        f"reference (StudyService.submit, no HTTP, 1 thread, {len(ref)} submits): p50 {np.percentile(ref, 50):.1f} "
        f"ms, p95 {np.percentile(ref, 95):.1f} ms"
    )
    svc.close()

    # ---------------------------------------------------------------- PostgreSQL, 1 vs 2 processes
    if args.postgres:
        from tests._postgres import PostgresServer

        pg = PostgresServer()
        try:
            pg.start()
        except RuntimeError as exc:
            print(f"\n[PostgreSQL] skipped: {exc}")
            pg.stop()
            return 0 if ok else 1
        try:
            best, steps = {}, {}
            for workers in (1, 2):
                url = pg.new_database(f"load{workers}")
                psvc = _setup(tmp, url)
                app = App("api", url, tmp / "data", workers=workers)
                try:
                    print(f"\n[PostgreSQL, uvicorn --workers {workers}] up after {app.wait():.1f} s")
                    rows = asyncio.run(_capacity(app.url, rates, args.step_s, args.pool, f"pg{workers}", app.cpu))
                    _print_steps(rows)
                    best[workers], steps[workers] = _best_under(rows), rows
                    print(f"  p95 crosses 300 ms at {_crossing(rows)}")
                    ok &= all(r["errors"] == 0 for r in rows)
                finally:
                    app.stop()
                    psvc.close()
            peak = {w: max(r["achieved"] for r in steps[w]) for w in steps}
            under = (
                f"{best[1]:.0f} vs {best[2]:.0f} ratings/s, ratio {best[2] / best[1]:.2f}x"
                if best[1] and best[2]
                else "not reached at the first step by " + " and ".join(f"{w} process(es)" for w in best if not best[w])
            )
            print(
                f"PostgreSQL, 1 vs 2 processes: highest rate served at p95 <= 300 ms: {under}; peak achieved "
                f"{peak[1]:.0f} vs {peak[2]:.0f} ratings/s, ratio {peak[2] / max(1e-9, peak[1]):.2f}x (client, app "
                f"processes and database share {os.cpu_count()} cores)"
            )
        finally:
            pg.stop()
    print(f"load average {os.getloadavg()[0]:.1f} after the run")
    return 0 if ok else 1


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
