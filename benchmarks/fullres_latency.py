"""Full-resolution render in the app: a 12 MP photo with ``lens``, end to end, with the share of each stage.

    python -m benchmarks.fullres_latency [--repeats 3] [--megapixels 12] [--depth-source approximate] [--http]

What is timed is the app's own render path (``space.render_tab.render_outputs``: decode, downscale to the
processing resolution, depth, lens, guided full-resolution finish, encoding of the download and the previews),
each call with a new focus point, as a click on the photo does. Target: <= 3 s for 12 MP.

Reference in the same run: the same photo rendered the way the app did before full-resolution output (processed
and returned at the processing resolution, PNG), so the ratio shows what the full-size result costs. With
``--http`` the same render is also called through the ``/render`` API of a local server (uploading the photo and
downloading the result over loopback).

The test photo is a CC0 example picture upscaled to the requested size with mild noise added (so that JPEG
decoding and encoding see camera-like detail); it is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks._common import camera_photo, free_port
from benchmarks._env import environment_lines

STAGES = ("decode", "downscale", "depth", "render", "finish", "encode")
TARGET_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument(
        "--depth-source",
        default="approximate",
        choices=["auto", "model", "dpt-hybrid", "depth-anything-v2-small", "approximate"],
    )
    parser.add_argument("--http", action="store_true", help="also time the /render API of a local server")
    args = parser.parse_args()
    print("\n".join(environment_lines()))

    from space.config import SpaceSettings
    from space.render_tab import render_outputs

    folder = Path(tempfile.mkdtemp(prefix="fullres_latency_"))
    photo = camera_photo(folder, args.megapixels, (4, 3))
    width, height = Image.open(photo).size
    settings = SpaceSettings.from_env()
    params = {"strength": 24}

    def click(i: int, app_settings: SpaceSettings) -> tuple[float, dict[str, float]]:
        x, y = width // 2 + 37 * i, height // 3 + 23 * i  # a new focus point: the approximate depth is redone
        out = render_outputs(app_settings, str(photo), "lens", x, y, args.depth_source, None, params)
        return out.seconds, out.timings

    click(0, settings)  # warm-up: Numba kernels, imports
    runs = [click(i + 1, settings) for i in range(args.repeats)]
    totals = [seconds for seconds, _ in runs]

    # Reference: the previous behaviour, processed and returned at the processing resolution.
    side = settings.max_render_side
    small = folder / "photo_processing_size.png"
    scale = side / max(width, height)
    Image.open(photo).resize((round(width * scale), round(height * scale)), Image.Resampling.BOX).save(small)
    reference = []
    for i in range(args.repeats):
        out = render_outputs(
            settings, str(small), "lens", int(width * scale) // 2 + 11 * i, 300, args.depth_source, None, params
        )
        reference.append(out.seconds)

    median = statistics.median(totals)
    print(
        f"photo {width}x{height} ({width * height / 1e6:.1f} MP), method lens, depth {args.depth_source}, "
        f"processing side {side} px, {args.repeats} clicks after warm-up"
    )
    print(
        f"full-resolution render (in the server): median {median:.2f} s (min {min(totals):.2f}, max {max(totals):.2f})"
    )
    for stage in STAGES:
        values = [timings.get(stage, 0.0) for _, timings in runs]
        stage_median = statistics.median(values)
        print(f"  {stage:<10} median {stage_median:6.2f} s  ({100 * stage_median / median:4.0f} %)")
    ref = statistics.median(reference)
    print(
        f"reference: processed and returned at {side} px (the previous app): median {ref:.2f} s; "
        f"full resolution costs {median / ref:.2f}x"
    )
    print(f"target <= {TARGET_S:.0f} s: {'met' if median <= TARGET_S else 'NOT met'}")

    if args.http:
        from gradio_client import Client, handle_file

        from space.app import build_app

        demo = build_app(settings)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            times = []
            for i in range(args.repeats):
                start = time.perf_counter()
                result, *_ = client.predict(
                    handle_file(str(photo)),
                    "lens",
                    width // 3 + 13 * i,
                    height // 2,
                    args.depth_source,
                    None,
                    '{"strength": 24}',
                    api_name="/render",
                )
                times.append(time.perf_counter() - start)
            size = Image.open(result).size
            print(
                f"/render over HTTP (upload {photo.stat().st_size / 1e6:.1f} MB + download): median "
                f"{statistics.median(times):.2f} s; result {size[0]}x{size[1]}"
            )
        finally:
            demo.close()


if __name__ == "__main__":
    main()
