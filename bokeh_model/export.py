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
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, ModelUnavailableError
from .modeling_pynet import _DISABLEABLE_LEVELS, LEVEL_SCALES, PyNET

__all__ = [
    "MIN_SIDE",
    "ONNX_OPSET",
    "PyNETExportModule",
    "export_litert",
    "export_onnx",
    "onnx_cache_path",
    "weights_fingerprint",
]

ONNX_OPSET = 18
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
        # max((-side) % 32, 64 - side): the pad of PyNET.forward, without a data-dependent branch.
        pad_h = torch.sym_max((-height) % _MULTIPLE, _MIN_PADDED - height)
        pad_w = torch.sym_max((-width) % _MULTIPLE, _MIN_PADDED - width)
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        out = self.model._pyramid(padded, self.level, self.disabled)[self.level]
        scale = LEVEL_SCALES[self.level]
        if scale >= 1:
            factor = int(scale)
            return out[..., : height * factor, : width * factor]
        divisor = round(1 / scale)  # ceil(side / divisor) in integers
        return out[..., : (height + divisor - 1) // divisor, : (width + divisor - 1) // divisor]


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
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_litert(*args: object, **kwargs: object) -> Path:  # pragma: no cover - replaced below
    raise NotImplementedError
