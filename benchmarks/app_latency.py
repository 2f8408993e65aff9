"""App latency: cold start of ``python app.py`` to the first HTTP 200, then the ``/render`` API for a 1024-px
photo with ``lens`` on the CPU (target <= 1.5 s), compared in the same run with calling the library directly.

    python -m benchmarks.app_latency [--repeats 5] [--depth-source approximate]

Loopback only: the app is started on 127.0.0.1 on a free port and stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from benchmarks._common import free_port
from benchmarks._env import ROOT, environment_lines


def _wait_ready(url: str, process: subprocess.Popen, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"app not ready after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", type=int, default=1024, help="longest side of the test photo (default 1024)")
    parser.add_argument(
        "--depth-source",
        default="approximate",
        choices=["auto", "model", "dpt-hybrid", "depth-anything-v2-small", "approximate"],
    )
    args = parser.parse_args()
    print("\n".join(environment_lines()))

    workdir = Path(tempfile.mkdtemp(prefix="app_latency_"))
    photo = workdir / "photo.png"
    source = Image.open(ROOT / "space" / "examples" / "astronaut.png").convert("RGB")
    scale = args.side / max(source.size)
    source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.BICUBIC).save(photo)
    width, height = Image.open(photo).size

    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "BOKEH_DATA_DIR": str(workdir / "data"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        cold = _wait_ready(f"http://127.0.0.1:{port}/", process, timeout=300)
        print(f"cold start (python app.py -> first HTTP 200): {cold:.2f} s")

        from gradio_client import Client, handle_file

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def render(x: int, y: int) -> float:
            start = time.perf_counter()
            client.predict(
                handle_file(str(photo)), "lens", x, y, args.depth_source, None, '{"strength": 24}', api_name="/render"
            )
            return time.perf_counter() - start

        render(width // 2, height // 3)  # warm-up: Numba kernels, imports
        # A slider change: same photo and focus, so the depth map comes from the cache.
        same_focus = [render(width // 2, height // 3) for _ in range(args.repeats)]
        # A click on the photo: a new focus point each time (the approximate depth depends on it).
        new_focus = [render(width // 2 + 7 * (i + 1), height // 3 + 5 * (i + 1)) for i in range(args.repeats)]
    finally:
        process.terminate()
        process.wait(timeout=30)

    # Reference in the same run: the same work through the library, without HTTP, encoding or the queue.
    from bokeh_model import create_method, load_image
    from bokeh_model.depth import approximate_depth, focus_disparity_at

    image = load_image(photo)
    lens = create_method("lens")
    lib_times = []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        depth = approximate_depth(image, (width // 2, height // 3))
        lens(image, depth, strength=24, focus_disparity=focus_disparity_at(depth, width // 2, height // 3))
        if i:
            lib_times.append(time.perf_counter() - start)

    lib = statistics.median(lib_times)
    print(f"photo {width}x{height}, method lens, depth {args.depth_source}, {args.repeats} timed calls after warm-up")
    print(f"library call (depth + lens), no HTTP:       median {lib:.3f} s")
    for name, times in (
        ("/render, same focus (depth cached)", same_focus),
        ("/render, new focus point each call", new_focus),
    ):
        api = statistics.median(times)
        verdict = "met" if api <= 1.5 else "NOT met"
        print(
            f"{name}: median {api:.3f} s (min {min(times):.3f}, max {max(times):.3f}); "
            f"{api / lib:.2f}x the library call; target <= 1.5 s {verdict}"
        )


if __name__ == "__main__":
    main()
