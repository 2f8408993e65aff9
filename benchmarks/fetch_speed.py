"""``fetch pynet`` end to end on a full-size checkpoint served from 127.0.0.1: download, convert, disk used.

The zip holds a random-weight, full-size PyNET checkpoint in TensorFlow's format (440 generator tensors, 47.55M
parameters, plus a few Adam slots), built by the test helper; the server is the tests' local HTTP server. The
reference in the same run is reading the same zip bytes over the same loopback connection (download only), so the
ratio says what conversion and verification add. Prints versions and the device.

    python -m benchmarks.fetch_speed
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    import numpy as np
    import torch

    from tests._local_server import LocalServer
    from tests._pynet_archive import build_pynet_zip

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BOKEH_CACHE"] = str(Path(tmp) / "cache")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BOKEH_OFFLINE"):
            os.environ.pop(name, None)
        from bokeh_model.fetch import download, fetch_pynet

        started = time.perf_counter()
        data, _ = build_pynet_zip()
        build_s = time.perf_counter() - started
        with LocalServer() as server:
            url = server.add("/PyNET_Bokeh_pretrained.zip", data)
            started = time.perf_counter()
            download(url, Path(tmp) / "reference.zip", progress=False)
            reference_s = time.perf_counter() - started
            (Path(tmp) / "reference.zip").unlink()

            peak = [0]

            def watch(label: str, done: int, total: int | None) -> None:
                peak[0] = max(peak[0], _folder_bytes(Path(tmp) / "cache"))

            started = time.perf_counter()
            result = fetch_pynet(url, progress=False, callback=watch, keep_zip=True)
            total_s = time.perf_counter() - started
        import json

        record = json.loads((result.path / "source.json").read_text())
        installed = _folder_bytes(result.path)
        with_zip = _folder_bytes(Path(tmp) / "cache")
    mb = 1e6
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"device: CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (conversion runs on CPU)")
    print(f"zip: {len(data) / mb:.1f} MB (built in {build_s:.1f} s, not counted)")
    print(f"reference, download only over loopback: {reference_s:.2f} s")
    print(
        f"fetch pynet: {total_s:.2f} s in all = download {record['download_seconds']:.2f} s + find/extract/convert/"
        f"verify {record['convert_seconds']:.2f} s; ratio to the reference {total_s / reference_s:.1f}x"
    )
    print(
        f"disk: installed folder {installed / mb:.1f} MB; with the kept zip {with_zip / mb:.1f} MB; "
        f"during the run up to about zip + extracted checkpoint + converted folder "
        f"({(len(data) * 2 + installed) / mb:.0f} MB)"
    )
    print(f"tensors skipped: {record['skipped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
