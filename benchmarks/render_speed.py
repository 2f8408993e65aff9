"""Speed of the classical bokeh renderers at 1024x1536, K = 32: every method on the CPU (and CUDA if present).

Usage: ``python -m benchmarks.render_speed [--threads 2] [--repeats 3] [--size 1024x1536] [--strength 32]
[--bokehlicious-onnx]``

The scene is synthetic (textured far wall, receding ground plane, an in-focus subject, a blurred foreground
object, bright points for bokeh balls), so the numbers are reproducible anywhere. In the same run the
``lens`` renderer is compared with a brute-force reference of the same model (the batched PyTorch/FFT
implementation on the same CPU) for the speed ratio, and with the exact direct-scatter reference on a
small copy of the scene for quality (PSNR). Targets from the issue: lens <= 1.0 s on the CPU, <= 5 ms on an H100.

Learned methods without weights here run with RANDOM weights of the published architecture (``bokehlicious``:
the authors' ``small``, 1.21 M parameters): their time does not depend on the values, their output means nothing.
``--bokehlicious-onnx`` also exports that network to ONNX (dynamic sides, multiples of 4) and times ONNX Runtime
on the CPU with the same threads.

BokehMe rows (``--bokehme-strength``, default the authors' K = 60, and the shared ``--strength``): its classical
scatter alone (``bokehme_classical``) and the full method (scatter + ARNet + IUNet). The full method runs with
RANDOM weights in the published format (a stand-in: its time does not depend on the weights' values, its output
means nothing), so the row needs no download.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch  # noqa: E402

from bokeh_model import create_method  # noqa: E402
from bokeh_model.images import resize_array  # noqa: E402
from bokeh_model.methods._lens_torch import render_layers_torch  # noqa: E402
from bokeh_model.methods._optics import signed_radius, srgb_to_linear  # noqa: E402
from bokeh_model.methods.lens import render_lens_reference  # noqa: E402

METHODS = ("lens", "disk", "gaussian")


def make_scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Synthetic RGB-D photo: (image, disparity, focus disparity of the subject)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    for c in range(3):  # smooth colour noise plus stripes
        coarse = rng.random((height // 32 + 2, width // 32 + 2)).astype(np.float32)
        image[..., c] = resize_array(coarse, (height, width), resample="bicubic")
    image = np.clip(0.15 + 0.6 * image + 0.1 * np.sin(xx / 7.0)[..., None], 0, 1)
    lights = rng.random((height, width)) > 0.9985  # bright points that become bokeh balls
    image[lights] = 1.0
    disparity = np.full((height, width), 0.1, np.float32)  # far wall
    horizon = 0.55 * height
    ground = yy > horizon
    disparity[ground] = 0.1 + 0.75 * (yy[ground] - horizon) / (height - horizon)
    subject = ((xx - 0.5 * width) / (0.13 * width)) ** 2 + ((yy - 0.5 * height) / (0.34 * height)) ** 2 < 1
    disparity[subject] = 0.7
    image[subject] = np.clip(image[subject] * 0.6 + np.array([0.35, 0.2, 0.1], np.float32), 0, 1)
    foreground = ((xx - 0.12 * width) / (0.08 * width)) ** 2 + ((yy - 0.85 * height) / (0.12 * height)) ** 2 < 1
    disparity[foreground] = 0.95
    return image, disparity, 0.7


def timed(function, repeats: int, device: str) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def bokehme_rows(
    image: np.ndarray, depth: np.ndarray, focus: float, device: str, repeats: int, strengths: tuple[float, ...]
) -> dict[str, dict[str, float]]:
    """BokehMe classical and full (random stand-in weights, see the module docstring) at each K."""
    import tempfile

    from bokeh_model.modeling_bokehme import ARNet, IUNet, parameter_count

    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        arnet, iunet = ARNet(), IUNet()
        torch.save({"model": arnet.state_dict()}, Path(folder) / "arnet.pth")
        torch.save({"model": iunet.state_dict()}, Path(folder) / "iunet.pth")
        print(f"  BokehMe parameters: ARNet {parameter_count(arnet):,}, IUNet {parameter_count(iunet):,}")
        methods = {
            "bokehme_classical": create_method("bokehme_classical", device=device),
            "bokehme": create_method("bokehme", weights=folder, device=device),
        }
        for strength in dict.fromkeys(strengths):
            for name, method in methods.items():
                params = {"strength": strength, "focus_disparity": focus}
                method(image[:64, :64], depth[:64, :64], **params)  # compile / load
                times = timed(lambda m=method, p=params: m(image, depth, **p), repeats, device)
                key = f"{name}@{device}[K={strength:g}]"
                rows[key] = {"median_s": statistics.median(times), "min_s": min(times)}
                note = " (random stand-in weights: time only)" if name == "bokehme" else ""
                median, fastest = statistics.median(times) * 1000, min(times) * 1000
                print(f"  {key:30s} median {median:9.1f} ms   min {fastest:9.1f} ms{note}")
        rows.update(bokehme_onnx_rows(arnet, iunet, image, repeats))
    return rows


def bokehme_onnx_rows(arnet, iunet, image: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """IUNet at the photo's size (the costliest network call of the pipeline): eager vs ONNX Runtime, same threads."""
    import tempfile

    import onnxruntime as ort

    from bokeh_model.modeling_bokehme import export_onnx

    height, width = image.shape[:2]
    rng = np.random.default_rng(0)
    photo = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    defocus = rng.uniform(-1, 1, (1, 1, height, width)).astype(np.float32)
    coarse = rng.random((1, 3, height // 2, width // 2), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        _, iunet_path = export_onnx(arnet, iunet, folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(iunet_path), options, providers=["CPUExecutionProvider"])
    feed = {"image": photo, "defocus": defocus, "coarse": coarse, "gamma": np.array(0.75, np.float32)}
    tensors = [torch.from_numpy(feed[k]) for k in ("image", "defocus", "coarse")]

    def eager() -> np.ndarray:
        with torch.inference_mode():
            return iunet.eval()(*tensors, 0.75).numpy()

    difference = float(np.abs(session.run(None, feed)[0] - eager()).max())
    rows = {}
    for name, function in (("eager", eager), ("onnxruntime", lambda: session.run(None, feed))):
        times = timed(function, repeats, "cpu")
        rows[f"bokehme-iunet-{name}@cpu"] = {"median_s": statistics.median(times), "min_s": min(times)}
        print(f"  IUNet at {width}x{height}, {name:12s} median {statistics.median(times) * 1000:9.1f} ms")
    print(f"  IUNet ONNX Runtime vs eager: max difference {difference:.1e}")
    return rows


def time_bokehlicious(image: np.ndarray, devices: list[str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Bokehlicious ``small`` with random weights (timing only) through the registered method: crop, network,
    clamp; at 1024x1536 no downscale (the authors' cap is 2000 px)."""
    import tempfile

    from bokeh_model.modeling_bokehlicious import Bokehlicious

    results: dict[str, dict[str, float]] = {}
    torch.manual_seed(0)
    network = Bokehlicious().eval()
    count = sum(p.numel() for p in network.parameters())
    print(f"  bokehlicious: RANDOM weights of the authors' small architecture ({count:,} parameters), timing only")
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "random-small.pt"
        torch.save(network.state_dict(), weights)
        for device in devices:
            method = create_method("bokehlicious", weights=weights, device=device)
            method(image[:64, :64], aperture=2.8)  # load, warm up
            cpu_start = time.process_time()
            times = timed(lambda m=method: m(image, aperture=2.8), args.learned_repeats, device)
            # On a shared machine wall time depends on the other load; the process's CPU seconds per run divided
            # by the threads estimates the wall time on idle cores (an estimate: it assumes perfect scaling).
            cpu_per_run = (time.process_time() - cpu_start) / len(times)
            key = f"bokehlicious@{device}"
            results[key] = {"median_s": statistics.median(times), "min_s": min(times), "cpu_s_per_run": cpu_per_run}
            print(
                f"  {key:14s} median {statistics.median(times) * 1000:9.1f} ms   min {min(times) * 1000:9.1f} ms   "
                f"CPU time {cpu_per_run:.1f} s per run (/{args.threads} threads = {cpu_per_run / args.threads:.1f} s)"
            )
    if args.bokehlicious_onnx:
        results.update(time_bokehlicious_onnx(network, image, args))
    return results


def time_bokehlicious_onnx(
    network: torch.nn.Module, image: np.ndarray, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Export to ONNX (torch.export-based exporter, opset 18, sides 4 * dynamic) and time ONNX Runtime on the CPU."""
    import tempfile

    import onnxruntime as ort

    from bokeh_model.methods.bokehlicious import preprocess
    from bokeh_model.modeling_bokehlicious import position_map

    names = ["source", "bokeh_strength", "pos_map", "bokeh_strength_map"]

    def inputs(height: int, width: int, picture: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
        if picture is None:
            source = torch.rand(1, 3, height, width)
        else:
            source = torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1)))[None]
        embedding = 2 / 2.8
        strength_map = torch.full((1, 1, height, width), embedding)
        return source, torch.tensor([embedding]), position_map(height, width), strength_map

    rows, cols = torch.export.Dim("rows", min=1, max=4096), torch.export.Dim("cols", min=1, max=4096)
    sides = {2: 4 * rows, 3: 4 * cols}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bokehlicious.onnx"
        start = time.perf_counter()
        with torch.no_grad():
            program = torch.onnx.export(
                network,
                inputs(64, 96),
                dynamo=True,
                opset_version=18,
                input_names=names,
                output_names=["output"],
                dynamic_shapes={"source": sides, "bokeh_strength": None, "pos_map": sides, "bokeh_strength_map": sides},
                external_data=False,
                verbose=False,
            )
        program.save(str(path), external_data=False)
        print(f"  bokehlicious ONNX export: {time.perf_counter() - start:.1f} s, {path.stat().st_size / 1e6:.1f} MB")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    network_input, _, _ = preprocess(image)
    tensors = inputs(*network_input.shape[:2], network_input)
    feeds = {name: tensor.numpy() for name, tensor in zip(names, tensors, strict=True)}
    with torch.inference_mode():
        reference = network(*tensors).numpy()
    out = session.run(None, feeds)[0]
    times = timed(lambda: session.run(None, feeds), args.learned_repeats, "cpu")
    difference = float(np.abs(out - reference).max())
    print(
        f"  bokehlicious-onnxruntime@cpu median {statistics.median(times) * 1000:9.1f} ms (network only; onnxruntime "
        f"{ort.__version__}), max |ORT - eager| = {difference:.2e}"
    )
    return {
        "bokehlicious-onnxruntime@cpu": {"median_s": statistics.median(times), "min_s": min(times)},
        "bokehlicious_onnx_max_abs_difference": {"value": difference},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch and the Numba renderer)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    parser.add_argument("--size", default="1024x1536", help="HxW of the benchmark photo")
    parser.add_argument("--strength", type=float, default=32.0, help="K, the largest blur radius in px")
    parser.add_argument("--bokehme-strength", type=float, default=60.0, help="a second K for the BokehMe rows")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--skip-reference", action="store_true", help="skip the brute-force CPU reference timing")
    parser.add_argument("--learned-repeats", type=int, default=1, help="timed runs of the learned methods")
    parser.add_argument("--skip-learned", action="store_true", help="skip the learned methods (bokehlicious)")
    parser.add_argument("--bokehlicious-onnx", action="store_true", help="also time Bokehlicious in ONNX Runtime")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    import numba

    versions = f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    print(f"{versions}, numba {numba.__version__}")
    cpu_name = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"CPU: {cpu_name}, {os.cpu_count()} logical cores, {args.threads} threads used, load average {load[0]:.2f}")
    image, depth, focus = make_scene(height, width)
    print(f"scene {width}x{height}, K = {args.strength:g}, focus disparity {focus}")
    results: dict[str, dict[str, float]] = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if device == "cuda":
            print(f"GPU: {torch.cuda.get_device_name(0)}")
        for name in METHODS:
            method = create_method(name, device=device)
            params = {"strength": args.strength, "focus_disparity": focus}
            method(image[:64, :64], depth[:64, :64], **params)  # compile / warm up
            times = timed(lambda m=method, p=params: m(image, depth, **p), args.repeats, device)
            key = f"{name}@{device}"
            results[key] = {"median_s": statistics.median(times), "min_s": min(times)}
            print(f"  {key:14s} median {statistics.median(times) * 1000:9.1f} ms   min {min(times) * 1000:9.1f} ms")
    for device in devices:
        results.update(bokehme_rows(image, depth, focus, device, args.repeats, (args.strength, args.bokehme_strength)))
    if not args.skip_learned:
        results.update(time_bokehlicious(image, devices, args))
    if not args.skip_reference:
        # the same layered model, brute force (every layer FFT-blurred at once) on the same CPU
        radius = signed_radius(depth, args.strength, focus)
        linear = srgb_to_linear(image)
        times = timed(lambda: render_layers_torch(linear, radius, device="cpu"), 1, "cpu")
        results["lens-bruteforce-torch@cpu"] = {"median_s": times[0], "min_s": times[0]}
        ratio = times[0] / results["lens@cpu"]["median_s"]
        print(
            f"  brute-force torch/FFT reference of the lens model on the CPU: {times[0] * 1000:.1f} ms "
            f"-> lens is {ratio:.1f}x faster"
        )
    # quality: fast lens vs the exact direct scatter on a small copy of the scene (K scaled with the size)
    small_h, small_w = 128, 192
    small_image = np.clip(resize_array(image, (small_h, small_w), resample="area"), 0, 1)
    small_depth = resize_array(depth, (small_h, small_w), resample="nearest")
    small_k = args.strength * small_w / width * 2
    reference = render_lens_reference(small_image, small_depth, strength=small_k, focus_disparity=focus)
    fast = create_method("lens", device="cpu")(
        small_image, small_depth, strength=small_k, focus_disparity=focus, highlight_boost=0.0
    )
    psnr = 10 * np.log10(1.0 / float(np.mean((fast.astype(np.float64) - reference) ** 2)))
    results["lens_vs_reference_psnr_db"] = {"value": psnr}
    print(f"  lens vs exact reference ({small_w}x{small_h}, K = {small_k:.1f}): PSNR {psnr:.2f} dB")
    target = results["lens@cpu"]["median_s"]
    print(f"lens on the CPU: {target:.3f} s (target <= 1.0 s: {'met' if target <= 1.0 else 'NOT met'})")
    if "lens@cuda" in results:
        gpu = results["lens@cuda"]["median_s"] * 1000
        verdict = "met" if gpu <= 5 else "NOT met"
        print(f"lens on CUDA: {gpu:.2f} ms including the host transfers (target <= 5 ms: {verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
