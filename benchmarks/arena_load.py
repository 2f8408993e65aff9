"""Load test of the arena's vote route (``POST /arena-api/v1/votes``): concurrent visitors over HTTP.

Starts the rater/arena API (``uvicorn --factory user_study.rater_api:create_rater_app``, SQLite in a temporary
folder) in a subprocess. Each of ``--visitors`` (default 50) simulated visitors has its own client address
(``X-Forwarded-For`` behind one trusted proxy hop, as on a Space), so the per-client limits apply to each as
they would in production. Two phases:

1. **Pre-render** (not timed against the target): every visitor asks for ``--battles`` battles on a small photo
   (``POST /battles``; the server draws the pairs and renders them with one depth map).
2. **Vote** (the target): all visitors at once, arriving spread over one second; for each battle a visitor
   fetches both images (the battle is then on screen), looks for ``--look-s`` (uniform 1-1.5x, at least the
   server's minimum look time) and votes; ``--double-rate`` of the votes are sent twice (a double click).

One visitor votes first, alone (the process's first vote compiles its SQL statements; reported apart). Printed:
vote latency p50/p95/max (target p95 <= 50 ms), votes/s, and against the database: acknowledged votes
missing (lost, target 0), battles with more than one vote (duplicated, target 0), double clicks answered as
duplicates. Versions and the machine are printed first.

    python -m benchmarks.arena_load                  # 50 visitors x 3 battles
    python -m benchmarks.arena_load --quick          # 10 visitors x 1 battle (smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks._common import free_port

__all__ = ["main"]

API = "/arena-api/v1"
MIN_LOOK_S = 1.0
WARM_UP_IP = "10.9.9.9"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _photo() -> bytes:
    rng = np.random.default_rng(0)
    arr = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    arr[16:48, 30:66] = (200, 120, 60)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Tally:
    lat_ms: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # perf_counter at each vote request's start
    app_ms: list[float] = field(default_factory=list)  # the app's own time (Server-Timing), queue included
    acked: set[str] = field(default_factory=set)  # battles whose vote the server acknowledged as recorded
    dup_answers: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _visitor(
    url: str, ip: str, battles: list[str], images: dict[str, list[str]], look: float, double: float, tally: Tally
) -> None:
    rng = random.Random(ip)
    headers = {"X-Forwarded-For": ip}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
        await asyncio.sleep(rng.random())  # arrivals spread over the first second
        for battle in battles:
            for src in images[battle]:
                r = await http.get(src)
                if r.status_code != 200:
                    tally.errors.append(f"image {r.status_code}")
            await asyncio.sleep(look * (1 + 0.5 * rng.random()))
            body = {"battle": battle, "choice": rng.choice(["a", "b", "a", "b", "tie", "bad"])}
            sends = 2 if rng.random() < double else 1
            for _ in range(sends):
                t0 = time.perf_counter()
                r = await http.post(f"{API}/votes", json=body)
                tally.lat_ms.append((time.perf_counter() - t0) * 1000)
                tally.starts.append(t0)
                timing = r.headers.get("server-timing", "")
                if "dur=" in timing:
                    tally.app_ms.append(float(timing.split("dur=")[1]))
                if r.status_code == 200:
                    status = r.json()["status"]
                    if status == "recorded":
                        tally.acked.add(battle)
                    else:
                        tally.dup_answers += 1
                else:
                    code = r.json().get("error", str(r.status_code))
                    tally.refused[code] = tally.refused.get(code, 0) + 1


async def _prerender(url: str, ips: list[str], n: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    photo = _photo()
    owned: dict[str, list[str]] = {ip: [] for ip in ips}
    images: dict[str, list[str]] = {}
    sem = asyncio.Semaphore(4)  # rendering is CPU work: a few at a time

    async def one(http: httpx.AsyncClient, ip: str) -> None:
        async with sem:
            r = await http.post(
                f"{API}/battles",
                files={"photo": ("p.png", photo, "image/png")},
                data={"x": "0.5", "y": "0.5"},
                headers={"X-Forwarded-For": ip},
            )
        if r.status_code != 200:
            raise RuntimeError(f"POST /battles: {r.status_code} {r.text}")
        b = r.json()
        owned[ip].append(b["battle"])
        images[b["battle"]] = [b["a"]["src"], b["b"]["src"]]

    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await asyncio.gather(*(one(http, ip) for ip in ips for _ in range(n)))
    return owned, images


def _count_db(db: Path) -> tuple[int, int, set[str]]:
    with sqlite3.connect(db) as con:
        n = con.execute("select count(*) from arena_vote").fetchone()[0]
        dup = con.execute(
            "select count(*) from (select battle_id from arena_vote group by battle_id having count(*) > 1)"
        ).fetchone()[0]
        stored = {row[0] for row in con.execute("select battle_id from arena_vote")}
    return int(n), int(dup), stored


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--visitors", type=int, default=50)
    p.add_argument("--battles", type=int, default=3, help="battles per visitor")
    p.add_argument("--look-s", type=float, default=MIN_LOOK_S + 0.2)
    p.add_argument("--double-rate", type=float, default=0.2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.visitors, args.battles = 10, 1
    print(
        f"python {platform.python_version()}, sqlalchemy {version('sqlalchemy')}, fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, httpx {version('httpx')}, sqlite {sqlite3.sqlite_version}"
    )
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, {platform.platform()}")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="arena_load_") as tmp:
        data = Path(tmp)
        db = data / "study.db"
        port = free_port()
        env = {
            **os.environ,
            "BOKEH_DATA_DIR": str(data),
            "BOKEH_STUDY_DB": f"sqlite:///{db}",
            "BOKEH_RATER_SECRET": "bench",
            "BOKEH_TRUSTED_PROXY_HOPS": "1",
            "BOKEH_ARENA_MIN_LOOK_S": str(MIN_LOOK_S),
            "BOKEH_DEPTH_MODEL": str(data / "no-depth-model"),  # the labelled approximate depth: no model load
        }
        env.pop("BOKEH_STUDY_HUB_REPO", None)
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", "user_study.rater_api:create_rater_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            t0 = time.time()
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:])
                try:
                    if httpx.get(f"{url}{API}/leaderboard", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() - t0 > 120:
                    raise RuntimeError("the app did not start within 120 s")
                time.sleep(0.3)
            ips = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(args.visitors)]
            t0 = time.perf_counter()
            owned, images = asyncio.run(_prerender(url, [*ips, WARM_UP_IP], args.battles))
            # one visitor first, alone: the process's first vote compiles its SQL statements (reported apart)
            warm = Tally()
            asyncio.run(_visitor(url, WARM_UP_IP, owned[WARM_UP_IP][:1], images, args.look_s, 0.0, warm))
            for battle in owned.pop(WARM_UP_IP):
                images.pop(battle)
            print(f"pre-rendered {len(images)} battles in {time.perf_counter() - t0:.1f} s")
            tally = Tally()
            cpu0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()

            async def crowd() -> None:
                await asyncio.gather(
                    *(_visitor(url, ip, owned[ip], images, args.look_s, args.double_rate, tally) for ip in ips)
                )

            asyncio.run(crowd())
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        n, dup, stored = _count_db(db)
    n -= len(warm.acked)
    stored -= warm.acked
    lat = np.array(tally.lat_ms)
    p50, p95 = np.percentile(lat, [50, 95])
    lost = len(tally.acked - stored)
    print(
        f"{args.visitors} visitors x {args.battles} battles, look {args.look_s:.1f}-{args.look_s * 1.5:.1f} s, "
        f"{args.double_rate:.0%} double clicks: {len(lat)} vote requests in {wall:.1f} s"
    )
    print(f"first vote of the process (warm-up, not counted below): {warm.lat_ms[0]:.0f} ms")
    n_requests = len(lat) + 2 * len(images)
    print(
        f"app CPU during the vote phase: {cpu:.2f} s for {len(lat)} votes + {2 * len(images)} image fetches "
        f"({cpu / max(1, n_requests) * 1000:.1f} ms per request; load average before the run {load[0]:.1f})"
    )
    print(f"vote latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {lat.max():.1f} ms  (target p95 <= 50 ms)")
    print(
        f"stored votes {n}, acknowledged {len(tally.acked)}, lost {lost}, battles with >1 vote {dup}, "
        f"double clicks answered as duplicate {tally.dup_answers}, refused {tally.refused or 0}, "
        f"errors {len(tally.errors)}"
    )
    ok = p95 <= 50 and lost == 0 and dup == 0 and n == len(images) and not tally.errors
    if tally.app_ms:
        a50, a95 = np.percentile(tally.app_ms, [50, 95])
        print(
            f"  of which inside the app (Server-Timing): p50 {a50:.1f} ms, p95 {a95:.1f} ms, "
            f"max {max(tally.app_ms):.1f} ms"
        )
    slow = np.argsort(lat)[-5:][::-1]
    first = min(tally.starts)
    print(
        "slowest votes (s after the first vote, ms):",
        ", ".join(f"{tally.starts[i] - first:.2f}s {lat[i]:.0f}" for i in slow),
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
