"""Export PyNET-Bokeh to ONNX (dynamic height and width) and to LiteRT (``.tflite``, for phones).

The paper's Table 2 runs PyNET on phones through TFLite, with and without instance norm; this module gives
the PyTorch model the same reach. One exported file holds one output level (and one set of disabled levels),
for any input height and width: the graph pads the input to a multiple of 32 with reflection, runs the pyramid
and crops the output, exactly as :meth:`PyNET.forward` does.

ONNX uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, needs ``onnxscript``)
at opset 18; the file is checked with ``onnx.checker`` after writing. LiteRT uses ``litert-torch``, which needs
its own virtual environment (see the README); :func:`export_litert` reports clearly when it is missing.

>>> # from bokeh_model.pynet import load_pynet
>>> # export_onnx(load_pynet("weights/"), "pynet_level1.onnx", level=1)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import BokehError, InputError, ModelUnavailableError
from .files import new_file_mode
from .modeling_pynet import _DISABLEABLE_LEVELS, LEVEL_SCALES, PyNET

__all__ = [
    "LITERT_PYTHON_ENV",
    "MIN_SIDE",
    "ONNX_OPSET",
    "PyNETExportModule",
    "export_litert",
    "export_onnx",
    "litert_python",
    "onnx_cache_path",
    "weights_fingerprint",
]

ONNX_OPSET = 18
LITERT_PYTHON_ENV = "BOKEH_LITERT_PYTHON"
# Below 33 px PyTorch pads by edge replication instead of reflection (reflection needs pad < side); the exported
# graph implements the reflection rule only, so inputs must have both sides >= 33 (the library pads smaller ones).
MIN_SIDE = 33
_MULTIPLE = 32
_MIN_PADDED = 64  # PyNET pads to at least 64 so that level 7 keeps 2x2 pixels for its instance norm


class PyNETExportModule(nn.Module):
    """PyNET fixed to one output level, written with shape arithmetic that tracing keeps symbolic.

    ``forward(x)`` equals ``model(x, level=level, disabled_levels=disabled_levels)`` for every input whose
    sides are at least :data:`MIN_SIDE`: the same reflection padding to a multiple of 32 (at least 64) and the
    same crop of the output (``ceil(side * scale)``), expressed with integer ops instead of Python branches.
    """

    def __init__(self, model: PyNET, level: int = 1, disabled_levels: Iterable[int] = ()) -> None:
        super().__init__()
        if level not in LEVEL_SCALES:
            raise InputError(f"level must be one of 1..7, got {level}")
        disabled = {int(v) for v in disabled_levels}
        if not disabled <= set(_DISABLEABLE_LEVELS):
            raise InputError(f"only levels {_DISABLEABLE_LEVELS} can be disabled, got {sorted(disabled)}")
        if level in disabled:
            raise InputError(f"level {level} is disabled, so it has no output to export")
        self.model = model
        self.level = level
        self.disabled = disabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        # The padded side of PyNET.forward, max(64, 32 * ceil(side / 32)), without a data-dependent branch and
        # written as a product with 32 so that the exporters can see it is divisible by 2 .. 32.
        padded_h = _MULTIPLE * torch.sym_max(_MIN_PADDED // _MULTIPLE, (height + _MULTIPLE - 1) // _MULTIPLE)
        padded_w = _MULTIPLE * torch.sym_max(_MIN_PADDED // _MULTIPLE, (width + _MULTIPLE - 1) // _MULTIPLE)
        pad_h, pad_w = padded_h - height, padded_w - width
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        out = self.model._pyramid(padded, self.level, self.disabled)[self.level]
        # Crop to ceil(side * scale). The padded side is a multiple of 32, so the output side is exact and the
        # crop is "output minus the padding's share"; written this way the exporters need no guard on the sizes.
        scale = LEVEL_SCALES[self.level]
        if scale >= 1:
            factor = int(scale)
            keep_h, keep_w = out.shape[-2] - pad_h * factor, out.shape[-1] - pad_w * factor
        else:
            divisor = round(1 / scale)
            keep_h, keep_w = out.shape[-2] - pad_h // divisor, out.shape[-1] - pad_w // divisor
        return out[..., :keep_h, :keep_w]


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a model's parameters and buffers, names and values: a cache key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _variant_tag(model: PyNET, level: int, disabled_levels: Iterable[int]) -> str:
    disabled = "".join(str(v) for v in sorted({int(v) for v in disabled_levels})) or "none"
    return f"c{model.in_channels}-level{level}-off{disabled}-opset{ONNX_OPSET}-torch{torch.__version__.split('+')[0]}"


def onnx_cache_path(
    model: PyNET, level: int = 1, disabled_levels: Iterable[int] = (), fingerprint: str | None = None
) -> Path:
    """Where the exported ONNX file of this model and variant is cached (``$BOKEH_CACHE`` or ~/.cache/bokeh_model).

    The key is the weights' fingerprint plus the graph's rules (channels, level, disabled levels, opset, torch
    version); height and width are dynamic, so one file serves every input size.
    """
    root = Path(os.environ.get("BOKEH_CACHE", Path.home() / ".cache" / "bokeh_model")).expanduser()
    fingerprint = fingerprint or weights_fingerprint(model)
    return root / "onnx" / f"pynet-{fingerprint}-{_variant_tag(model, level, disabled_levels)}.onnx"


def export_onnx(
    model: PyNET,
    out: str | os.PathLike,
    *,
    level: int = 1,
    disabled_levels: Iterable[int] = (),
    example_size: tuple[int, int] = (64, 96),
    check: bool = True,
) -> Path:
    """Write ``model`` (one output level) as an ONNX file with dynamic batch, height and width.

    Args:
        model: a :class:`PyNET` (any variant: RGB + depth or RGB only, with or without instance norm).
        out: the ``.onnx`` file to write; written to a temporary file first, so a failure leaves nothing behind.
        level: the output level, 1 (full resolution) .. 7.
        disabled_levels: levels among 7..4 switched off (the paper's Fig. 8).
        example_size: (H, W) of the example input used for tracing; the exported sizes stay dynamic.
        check: run ``onnx.checker.check_model`` on the written file.

    Returns:
        The path written. Inputs are named ``input`` (N, C, H, W) float32, outputs ``output``.

    Raises:
        InputError: bad level or disabled levels.
        ModelUnavailableError: ``onnx`` or ``onnxscript`` is not installed.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError as exc:
        raise ModelUnavailableError(f"ONNX export needs the onnx and onnxscript packages: {exc}") from None
    wrapper = PyNETExportModule(model, level, disabled_levels).eval()
    device = next(model.parameters()).device
    example = torch.rand(1, model.in_channels, *example_size, device=device)
    batch = torch.export.Dim("batch", min=1, max=64)
    height = torch.export.Dim("height", min=MIN_SIDE, max=16384)
    width = torch.export.Dim("width", min=MIN_SIDE, max=16384)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                opset_version=ONNX_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
                external_data=False,
                verbose=False,
            )
        program.save(str(tmp), external_data=False)
        if check:
            onnx.checker.check_model(str(tmp), full_check=True)
        os.chmod(tmp, new_file_mode())  # mkstemp made it 0600; an exported model is meant to be shared
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def litert_python() -> Path | None:
    """The Python of the litert-torch environment: ``$BOKEH_LITERT_PYTHON`` or ``.venv-litert`` of this checkout."""
    configured = os.environ.get(LITERT_PYTHON_ENV)
    candidate = Path(configured) if configured else Path(__file__).resolve().parents[1] / ".venv-litert/bin/python"
    return candidate if candidate.is_file() else None


def export_litert(
    model: PyNET,
    out: str | os.PathLike,
    *,
    level: int = 1,
    disabled_levels: Iterable[int] = (),
    size: tuple[int, int] = (512, 768),
    timeout_s: float = 3600,
) -> dict:
    """Write ``model`` (one output level, fixed input ``size``) as a LiteRT ``.tflite`` file through litert-torch.

    The conversion runs in the separate litert-torch environment (:func:`litert_python`): the model is saved to
    a temporary folder and converted there by ``bokeh_model/_litert_worker.py``, which also runs the written file
    in the LiteRT interpreter on a random input and compares it with PyTorch.

    Returns:
        ``{"out": path, "bytes": size, "max_abs_diff": LiteRT vs PyTorch}``.

    Raises:
        ModelUnavailableError: no litert-torch environment (the message says how to create one).
        BokehError: the conversion failed (its last output lines are included).
    """
    PyNETExportModule(model, level, disabled_levels)  # validates level and disabled levels here, not in the worker
    if min(size) < MIN_SIDE:
        raise InputError(f"LiteRT input size must be at least {MIN_SIDE}x{MIN_SIDE}, got {size[0]}x{size[1]}")
    python = litert_python()
    if python is None:
        raise ModelUnavailableError(
            "LiteRT export needs litert-torch, which lives in its own environment: run `make litert-env` "
            f"(creates .venv-litert) or point {LITERT_PYTHON_ENV} at a Python that has litert-torch installed"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    disabled = ",".join(str(v) for v in sorted({int(v) for v in disabled_levels}))
    with tempfile.TemporaryDirectory(prefix="pynet-litert-") as tmp:
        model_dir = Path(tmp) / "weights"
        # state_dict tensors are copied to the CPU by save_pretrained; the caller's model stays where it is.
        model.save_pretrained(model_dir)
        command = [
            str(python),
            str(Path(__file__).resolve().parent / "_litert_worker.py"),
            "--weights",
            str(model_dir),
            "--out",
            str(out),
            "--level",
            str(level),
            "--disable-levels",
            disabled,
            "--size",
            str(size[0]),
            str(size[1]),
            "--threads",
            str(torch.get_num_threads()),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BokehError(f"LiteRT conversion failed (exit code {result.returncode}):\n{tail}")
    return json.loads(lines[-1])
