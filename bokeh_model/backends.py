"""Execution backends for PyNET inference, and the measured choice among them (``backend="auto"``).

Backends (all fp32, all numerically the same network):

* ``eager``: plain PyTorch, NCHW.
* ``channels_last``: PyTorch with channels-last tensors (a converted *copy* of the model; the caller's model
  is never changed in place).
* ``compile``: ``torch.compile`` (inductor); the first call of each input shape compiles for minutes on a CPU.
* ``onnxruntime``: the model exported to ONNX once (cached on disk, see :func:`bokeh_model.export.onnx_cache_path`)
  and run by ONNX Runtime's CPU provider.
* ``openvino``: the same ONNX file run by OpenVINO's CPU plugin (fp32 inference precision forced, so that CPUs
  with bf16 units do not silently lower the precision).

``auto`` picks, among the backends that can run here, the fastest in :data:`CPU_MEASUREMENTS`, a table measured
with ``benchmarks/pynet_speed.py``, keeping only backends whose output stays at least
:data:`MIN_PSNR_VS_FP32` dB from PyTorch fp32 and that do not compile again for every new input shape. On a GPU,
``auto`` is PyTorch eager (no GPU table has been measured yet). The name of the backend that actually ran is
reported (``run_pynet(..., info=d)`` sets ``d["backend"]``).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .modeling_pynet import PyNET

__all__ = [
    "AUTO",
    "BACKENDS",
    "CPU_MEASUREMENTS",
    "MIN_PSNR_VS_FP32",
    "BackendMeasurement",
    "PyNETRunner",
    "available_backends",
    "backend_status",
    "get_runner",
    "resolve_backend",
]

LOGGER = logging.getLogger(__name__)

AUTO = "auto"
BACKENDS = ("eager", "channels_last", "compile", "onnxruntime", "openvino")
MIN_PSNR_VS_FP32 = 50.0


@dataclass(frozen=True)
class BackendMeasurement:
    """One row of ``benchmarks/pynet_speed.py``: median ms per pass, PSNR vs PyTorch fp32, and whether the backend
    pays a long warm-up again in every process and for new input shapes (then ``auto`` does not pick it)."""

    ms: float
    psnr_vs_fp32: float
    warmup_per_shape: bool = False


# Measured with `benchmarks/pynet_speed.py --threads 2 --size 256 384 --repeats 3` (He-scaled random full-size
# model, level 1; 256x384 is the network input of the app's 768-px preview) on the 2-core AMD EPYC development
# machine on 2026-11-30, quiet (load average < 1 before the run). At 512x768 the ranking was the same (eager 6.92 s,
# channels_last 6.70 s, onnxruntime 6.12 s, openvino 6.10 s). ONNX Runtime and OpenVINO are within 2 % of each
# other, 8-13 % faster than eager. torch.compile was measured only under heavy load (3.7x eager then, first call
# 329 s): its first call is paid again in every process and for new input shapes, so `auto` skips it. int8 (ONNX
# Runtime static QDQ: 11.6x eager but 23.0 dB vs fp32; dynamic: slower than eager, 25.6 dB) is far below the
# 50 dB floor and not listed. Re-measure on the target machine (see the README) and update this table when the
# ranking changes.
CPU_MEASUREMENTS: dict[str, BackendMeasurement] = {
    "compile": BackendMeasurement(ms=8541.0, psnr_vs_fp32=103.8, warmup_per_shape=True),  # under load, see above
    "openvino": BackendMeasurement(ms=1482.0, psnr_vs_fp32=103.9),
    "onnxruntime": BackendMeasurement(ms=1500.0, psnr_vs_fp32=112.8),
    "channels_last": BackendMeasurement(ms=1616.0, psnr_vs_fp32=104.5),
    "eager": BackendMeasurement(ms=1617.0, psnr_vs_fp32=float("inf")),
}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def backend_status(name: str, device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether backend ``name`` can run on ``device`` here, and if not, why (one line)."""
    device = torch.device(device)
    if name not in BACKENDS:
        raise InputError(f"unknown PyNET backend {name!r}; choose one of {(AUTO, *BACKENDS)}")
    if name in ("onnxruntime", "openvino"):
        if device.type != "cpu":
            return False, f"{name} runs on the CPU only here (device is {device})"
        if not _has("onnx") or not _has("onnxscript"):
            return False, f"{name} needs the onnx and onnxscript packages for the export"
        if not _has(name):
            return False, f"the {name} package is not installed"
    if name == "compile" and device.type == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        return False, "torch.compile on the CPU needs a C++ compiler (g++)"
    return True, ""


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backends that can run on ``device`` on this machine, in :data:`BACKENDS` order."""
    return [name for name in BACKENDS if backend_status(name, device)[0]]


def resolve_backend(name: str, device: torch.device | str = "cpu", precision: str = "fp32") -> str:
    """Turn ``auto`` into a concrete backend; check an explicit one.

    Raises:
        InputError: unknown name, a backend that cannot run here (the reason is given), or a reduced
            ``precision`` with a backend that runs fp32 only.
    """
    device = torch.device(device)
    if name == AUTO:
        if device.type != "cpu" or precision != "fp32":
            return "eager"  # autocast precisions are PyTorch-only; no GPU ranking has been measured
        ranked = sorted(
            (m.ms, backend)
            for backend, m in CPU_MEASUREMENTS.items()
            if m.psnr_vs_fp32 >= MIN_PSNR_VS_FP32 and not m.warmup_per_shape and backend in BACKENDS
        )
        for _, backend in ranked:
            if backend_status(backend, device)[0]:
                return backend
        return "eager"
    ok, reason = backend_status(name, device)
    if not ok:
        raise InputError(f"PyNET backend {name!r} is not available: {reason}")
    if precision != "fp32" and name in ("onnxruntime", "openvino"):
        raise InputError(f"backend {name!r} runs fp32 only; use eager, channels_last or compile for {precision}")
    return name


class PyNETRunner:
    """One PyNET forward at a fixed level on one backend, for NCHW float32 tensors.

    ``runner(x)`` returns the output; ``runner.run(x)`` returns ``(output, backend that ran)``: inputs with a side
    below 33 px run eagerly on every backend (the exported graphs' lower bound).
    """

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], eager: Callable | None = None) -> None:
        self.name = name
        self._fn = fn
        self._eager = eager

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        from .export import MIN_SIDE

        if self._eager is not None and min(x.shape[-2:]) < MIN_SIDE:
            return self._eager(x), "eager"
        return self._fn(x), self.name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    def __repr__(self) -> str:
        return f"PyNETRunner({self.name!r})"


# Runners are cached per model object (weakly: they go away with the model) and per variant; an exported runner holds
# a copy of the weights (about 190 MB), so only the most recently used few are kept per model.
_RUNNERS: weakref.WeakKeyDictionary[PyNET, OrderedDict[tuple, PyNETRunner]] = weakref.WeakKeyDictionary()
_CHANNELS_LAST: weakref.WeakKeyDictionary[PyNET, PyNET] = weakref.WeakKeyDictionary()
_MAX_RUNNERS_PER_MODEL = 4
_LOCK = threading.Lock()


def get_runner(
    model: PyNET, backend: str, level: int = 1, disabled_levels: Iterable[int] = (), device: torch.device | None = None
) -> PyNETRunner:
    """The runner of ``model`` on a concrete ``backend`` (see :func:`resolve_backend`), built once and cached.

    Building may take long the first time: the ONNX export (tens of seconds, then cached on disk) or
    ``torch.compile``.
    """
    disabled = tuple(sorted({int(v) for v in disabled_levels}))
    device = device or next(model.parameters()).device
    key = (backend, level, disabled, str(device))
    with _LOCK:
        per_model = _RUNNERS.setdefault(model, OrderedDict())
        runner = per_model.get(key)
        if runner is None:
            runner = _build(model, backend, level, disabled)
            per_model[key] = runner
            while len(per_model) > _MAX_RUNNERS_PER_MODEL:
                per_model.popitem(last=False)
        per_model.move_to_end(key)
    return runner


def _eager_fn(model: PyNET, level: int, disabled: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    # A weak proxy: the cache is keyed weakly by the model, so its runners must not keep the model alive.
    weak_model = weakref.proxy(model)
    return lambda x: weak_model(x, level=level, disabled_levels=disabled)


def _build(model: PyNET, backend: str, level: int, disabled: tuple[int, ...]) -> PyNETRunner:
    from .export import PyNETExportModule

    eager = _eager_fn(model, level, disabled)
    if backend == "eager":
        return PyNETRunner("eager", eager)
    if backend == "channels_last":
        # A converted copy (one per model): Module.to(memory_format=...) works in place and the model is shared.
        twin = _CHANNELS_LAST.get(model)
        if twin is None:
            twin = _CHANNELS_LAST[model] = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
        return PyNETRunner(
            "channels_last",
            lambda x: twin(x.contiguous(memory_format=torch.channels_last), level=level, disabled_levels=disabled),
        )
    if backend == "compile":
        # The compiled module holds the model, so a compiled runner lives as long as the process (load_pynet keeps
        # its models cached anyway).
        return PyNETRunner("compile", torch.compile(PyNETExportModule(model, level, disabled).eval()), eager)
    onnx_path = _cached_onnx(model, level, disabled)
    threads = torch.get_num_threads()
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        def run_ort(x: torch.Tensor) -> torch.Tensor:
            array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            return torch.from_numpy(session.run(None, {"input": array})[0])

        return PyNETRunner("onnxruntime", run_ort, eager)
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled_model = core.compile_model(
            core.read_model(str(onnx_path)),
            "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        )
        request_lock = threading.Lock()  # one infer request, used by one caller at a time

        def run_openvino(x: torch.Tensor) -> torch.Tensor:
            array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            with request_lock:
                result = compiled_model(array)[0]
            return torch.from_numpy(np.array(result, copy=True))

        return PyNETRunner("openvino", run_openvino, eager)
    raise InputError(f"unknown PyNET backend {backend!r}; choose one of {(AUTO, *BACKENDS)}")


def _cached_onnx(model: PyNET, level: int, disabled: tuple[int, ...]) -> Path:
    from .export import export_onnx, onnx_cache_path

    path = onnx_cache_path(model, level, disabled)
    if not path.is_file():
        LOGGER.info("exporting PyNET level %s to ONNX once (cached at %s)", level, path)
        cpu_model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
        export_onnx(cpu_model, path, level=level, disabled_levels=disabled)
    return path
