"""PyNET in the app at its trained scale: a 12 MP photo, click to result, on this machine's CPU (or GPU).

    python -m benchmarks.pynet_app_latency [--repeats 3] [--megapixels 12] [--weights DIR] [--backend auto]

What is timed is the app's own render path (``space.render_tab.render_outputs``: decode, downscale to the
processing resolution, depth, PyNET at its trained scale, i.e. the photo resized to a 1536-px long side and a
768x512 network input for a 3:2 photo, the guided finish to the photo's size, encoding of the download and the
previews), each call with a new focus point, as a click on the photo does, after the app's start-up work (the
backend build that ``space/app.py`` does in the background). Target: <= 4 s for 12 MP on a CPU.

Without ``--weights`` the model is the full-size PyNET with He-scaled random weights (``tests/_tiny_models.py``):
PyNET-Bokeh's trained weights are not on this machine. The time does not depend on the weight values; the image
does, so nothing here looks at it. In the same run, the previous app behaviour on a CPU (PyNET on a 768-px
preview, half its trained scale) is timed as a reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._common import camera_photo
from benchmarks._env import environment_lines

STAGES = ("decode", "downscale", "depth", "render", "finish", "encode")
TARGET_S = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--depth-source", default="approximate", choices=["auto", "model", "approximate"])
    parser.add_argument("--weights", help="trained PyNET weights (default: a random-weights stand-in, timing only)")
    parser.add_argument("--backend", default=os.environ.get("BOKEH_PYNET_BACKEND", "auto"))
    parser.add_argument("--no-reference", action="store_true", help="skip the 768-px preview reference")
    args = parser.parse_args()
    os.environ["BOKEH_PYNET_BACKEND"] = args.backend
    print("\n".join(environment_lines()))
    print(f"load average (other users of this machine): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    from space.config import SpaceSettings
    from space.render_tab import render_outputs
    from space.services import get_method

    folder = Path(tempfile.mkdtemp(prefix="pynet_app_latency_"))
    weights = args.weights
    if weights is None:
        from tests._tiny_models import he_random_pynet

        weights = str(folder / "stand-in-pynet")
        he_random_pynet().save_pretrained(weights)
        print("PyNET weights: random-weights stand-in (tests/_tiny_models.py); timing only, the image means nothing")
    photo = camera_photo(folder, args.megapixels, (3, 2))
    width, height = Image.open(photo).size
    settings = dataclasses.replace(SpaceSettings.from_env(), pynet_weights=weights, pynet_cpu_preview_side=0)

    start = time.perf_counter()
    backend = get_method("pynet", weights).prepare()  # what the app does in the background at start-up
    print(f"app start-up: PyNET loaded and its {backend} backend built in {time.perf_counter() - start:.1f} s")

    cpu_seconds: list[float] = []

    def click(i: int, app_settings: SpaceSettings) -> tuple[float, dict[str, float], str]:
        x, y = width // 2 + 37 * i, height // 3 + 23 * i  # a new focus point: the approximate depth is redone
        cpu = time.process_time()
        out = render_outputs(app_settings, str(photo), "pynet", x, y, args.depth_source, None, {})
        cpu_seconds.append(time.process_time() - cpu)
        return out.seconds, out.timings, out.notes

    click(0, settings)  # warm-up: first calls of the kernels
    runs = [click(i + 1, settings) for i in range(args.repeats)]
    totals = [seconds for seconds, _, _ in runs]
    notes = runs[-1][2]
    network = re.search(r"network input (\d+x\d+)", notes)
    ran = re.search(r"on the (\S+) backend", notes)
    print(
        f"photo {width}x{height} ({width * height / 1e6:.1f} MP), depth {args.depth_source}, PyNET network input "
        f"{network.group(1) if network else '?'} on the {ran.group(1) if ran else '?'} backend, "
        f"{args.repeats} clicks after warm-up"
    )
    median = statistics.median(totals)
    print(f"click to result (in the server): median {median:.2f} s (min {min(totals):.2f}, max {max(totals):.2f})")
    cpu_median = statistics.median(cpu_seconds[1:])
    print(f"  CPU time of a click (all threads, spin-waiting included): median {cpu_median:.2f} s")
    # PyNET alone on the same input, in the same process: what the app adds around it is the rest of the click.
    method = get_method("pynet", weights)
    scaled = np.random.default_rng(0).random((1024, 1536, 3), dtype=np.float32)
    disparity = np.random.default_rng(1).random((1024, 1536), dtype=np.float32)
    alone = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        method(scaled, disparity, max_side=0)
        alone.append(time.perf_counter() - start)
    pynet_alone = statistics.median(alone)
    print(
        f"  PyNET alone on a 1536x1024 photo (768x512 input, {method.last_backend}): median {pynet_alone:.2f} s; "
        f"the rest of the click (decode, depth, resizes, finish to 12 MP, encoding): {median - pynet_alone:.2f} s"
    )
    for stage in STAGES:
        stage_median = statistics.median(timings.get(stage, 0.0) for _, timings, _ in runs)
        print(f"  {stage:<10} median {stage_median:6.2f} s  ({100 * stage_median / median:4.0f} %)")
    print(f"target <= {TARGET_S:.0f} s on a CPU: {'met' if median <= TARGET_S else 'NOT met'}")

    # Another click on the same photo with a given depth map (an upload here; a depth model behaves the same): PyNET
    # has no focus input, so the app reuses its output and the click costs the rest of the pipeline only.
    depth_file = folder / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))).save(depth_file)

    def depth_click(i: int) -> tuple[float, str]:
        x, y = width // 2 + 41 * i, height // 3 + 29 * i
        out = render_outputs(settings, str(photo), "pynet", x, y, "upload", str(depth_file), {})
        return out.seconds, out.notes

    first_seconds, _ = depth_click(0)
    again = [depth_click(i + 1) for i in range(args.repeats)]
    assert all("reused" in notes for _, notes in again), "PyNET's output was not reused"
    again_median = statistics.median(seconds for seconds, _ in again)
    print(
        f"with a depth map (uploaded): first click {first_seconds:.2f} s; another click on the same photo "
        f"(PyNET's output reused): median {again_median:.2f} s"
    )

    if not args.no_reference:
        preview = dataclasses.replace(settings, pynet_cpu_preview_side=768)
        click(0, preview)
        reference = statistics.median(click(i + 1, preview)[0] for i in range(args.repeats))
        print(
            f"reference, the previous app on a CPU (PyNET on a 768-px preview, half its trained scale): median "
            f"{reference:.2f} s; the trained scale costs {median / reference:.2f}x"
        )


if __name__ == "__main__":
    main()
