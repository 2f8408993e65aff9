"""Convert the authors' TensorFlow PyNET-Bokeh checkpoint into a ``PyNET.from_pretrained`` folder.

The authors' ``model.py`` builds every weight as an unnamed ``tf.Variable`` under the ``generator``
scope, so the checkpoint's keys are ``generator/Variable``, ``generator/Variable_1``, ... numbered in
creation order (https://github.com/aiff22/PyNET-Bokeh, ``model.py``). :class:`~bokeh_model.modeling_pynet.PyNET`
registers its modules in that same order, so the mapping is positional:

* a conv layer creates kernel ``[kh, kw, in, out]``, bias ``[out]`` and, with instance norm, shift
  (beta, PyTorch ``norm.bias``) then scale (gamma, ``norm.weight``); PyTorch's parameter order is
  conv.weight, conv.bias, norm.weight, norm.bias, so the last two swap places;
* a transposed conv creates one kernel ``[k, k, out, in]`` (PyTorch: ``(in, out, k, k)``).

Both kernel kinds become PyTorch layout with ``transpose(3, 2, 0, 1)``. The first layer needs no
channel permutation: :func:`~bokeh_model.modeling_pynet.space_to_depth_tf` already produces TensorFlow's
channel order ((dy * 2 + dx) * C + c), so input channel i of the TF kernel meets the same pixel in both
frameworks (``tests/test_convert_tf.py`` checks this against TensorFlow's own outputs).

Conversion is strict about the generator: every variable is checked against the expected shape in order,
and the first missing, misshapen or unexpected generator weight stops it with an error naming both sides.
Tensors that are not generator weights are skipped and counted: the authors' test script restores with a
plain ``Saver()``, so a released checkpoint may also hold Adam slots (``generator/Variable_N/Adam``,
``/Adam_1``), ``beta1_power`` / ``beta2_power``, step counters or variables outside the ``generator`` scope.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .files import atomic_directory
from .modeling_pynet import PyNET
from .tf_checkpoint import TFCheckpointError, TFCheckpointReader

__all__ = [
    "ConversionError",
    "LayoutEntry",
    "classify_extra_tensor",
    "convert_tf_checkpoint",
    "convert_tf_tensors",
    "skipped_tensors",
    "tf_layout",
    "tf_variable_name",
    "to_tf_tensors",
]

_VARIABLE = re.compile(r"^Variable(?:_(\d+))?$")
# Slots that TF optimizers create next to a variable (``<var>/Adam``, ``<var>/Adam_1``, ``<var>/Momentum`` ...).
_OPTIMIZER_SLOT = re.compile(r"/(?:Adam|Adam_\d+|Momentum|RMSProp|RMSProp_\d+|Adagrad|Ftrl|Ftrl_\d+)$")
# Optimizer scalars and step counters (``beta1_power``, ``beta2_power_1``, ``global_step``, ``step`` ...).
_COUNTER = re.compile(r"(?:^|/)(?:beta[12]_power(?:_\d+)?|global_step|step|iteration|iterations)$")


class ConversionError(InputError):
    """The checkpoint does not match the PyNET graph (missing, unexpected or misshapen tensor)."""


@dataclass(frozen=True)
class LayoutEntry:
    """One TF variable in creation order and the PyTorch parameter it becomes."""

    index: int
    tf_name: str
    tf_shape: tuple[int, ...]
    torch_name: str
    torch_shape: tuple[int, ...]
    kind: str  # "kernel", "transposed_kernel", "bias", "shift", "scale"


def tf_variable_name(index: int, scope: str = "generator") -> str:
    """TF's name for the ``index``-th unnamed variable in ``scope``: ``Variable``, ``Variable_1``, ..."""
    base = "Variable" if index == 0 else f"Variable_{index}"
    return f"{scope}/{base}" if scope else base


def _kind(name: str, param: torch.nn.Parameter, transposed: set[str]) -> str:
    if name in transposed:
        return "transposed_kernel"
    if name.endswith("norm.bias"):
        return "shift"
    if name.endswith("norm.weight"):
        return "scale"
    return "kernel" if param.ndim == 4 else "bias"


def tf_layout(model: PyNET, scope: str = "generator") -> list[LayoutEntry]:
    """The TF variables a checkpoint of ``model``'s configuration holds, in creation order.

    Args:
        model: any PyNET (a ``meta``-device instance is enough: only names and shapes are used).
        scope: the TF variable scope (the authors use ``generator``).
    """
    from .modeling_pynet import PyNETTransposedConv

    transposed = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, PyNETTransposedConv)}
    params = list(model.named_parameters())
    ordered: list[tuple[str, torch.nn.Parameter]] = []
    i = 0
    while i < len(params):
        name, param = params[i]
        # PyTorch registers norm.weight (scale) before norm.bias (shift); TF creates shift first.
        if name.endswith("norm.weight") and i + 1 < len(params) and params[i + 1][0].endswith("norm.bias"):
            ordered += [params[i + 1], params[i]]
            i += 2
            continue
        ordered.append((name, param))
        i += 1
    layout = []
    for index, (name, param) in enumerate(ordered):
        torch_shape = tuple(param.shape)
        tf_shape = (torch_shape[2], torch_shape[3], torch_shape[1], torch_shape[0]) if param.ndim == 4 else torch_shape
        layout.append(
            LayoutEntry(
                index, tf_variable_name(index, scope), tf_shape, name, torch_shape, _kind(name, param, transposed)
            )
        )
    return layout


def _sort_key(name: str, scope: str) -> tuple[int, int, str]:
    prefix = f"{scope}/" if scope else ""
    if name.startswith(prefix):
        match = _VARIABLE.match(name[len(prefix) :])
        if match:
            return (0, int(match.group(1) or 0), name)
    return (1, 0, name)


def _to_torch(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 4:
        array = array.transpose(3, 2, 0, 1)  # [kh,kw,in,out] -> [out,in,kh,kw]; [k,k,out,in] -> [in,out,k,k]
    return torch.from_numpy(np.ascontiguousarray(array))


def classify_extra_tensor(name: str, scope: str = "generator") -> str | None:
    """Why a tensor that is not a PyNET weight may be skipped, or ``None`` if it must not be.

    Returns ``"optimizer slot"``, ``"counter"`` or ``"outside scope"`` (a variable of another network,
    e.g. a discriminator); ``None`` for anything inside ``scope`` that looks like a generator weight, so
    that a checkpoint of another architecture is still refused.
    """
    if _OPTIMIZER_SLOT.search(name):
        return "optimizer slot"
    if _COUNTER.search(name):
        return "counter"
    prefix = f"{scope}/" if scope else ""
    if prefix and not name.startswith(prefix):
        return "outside scope"
    return None


def _split_extra(
    layout: list[LayoutEntry], shapes: Mapping[str, tuple[int, ...]], scope: str
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``(generator tensors, {skipped name: reason})``: the second part never reaches the mapping."""
    expected = {entry.tf_name for entry in layout}
    kept: dict[str, tuple[int, ...]] = {}
    skipped: dict[str, str] = {}
    for name, shape in shapes.items():
        reason = None if name in expected else classify_extra_tensor(name, scope)
        if reason is None:
            kept[name] = shape
        else:
            skipped[name] = reason
    return kept, skipped


def _check(layout: list[LayoutEntry], shapes: Mapping[str, tuple[int, ...]], scope: str, strict: bool) -> None:
    for entry in layout:
        if entry.tf_name not in shapes:
            if strict:
                raise ConversionError(
                    f"missing tensor {entry.tf_name} {list(entry.tf_shape)} "
                    f"(for {entry.torch_name}); the checkpoint has {len(shapes)} tensors, "
                    f"PyNET expects {len(layout)}"
                )
            continue
        if tuple(shapes[entry.tf_name]) != entry.tf_shape:
            raise ConversionError(
                f"shape mismatch at {entry.tf_name}: checkpoint {list(shapes[entry.tf_name])}, "
                f"expected {list(entry.tf_shape)} for {entry.torch_name} ({entry.kind})"
            )
    if strict:
        expected = {entry.tf_name for entry in layout}
        extra = sorted((name for name in shapes if name not in expected), key=lambda n: _sort_key(n, scope))
        if extra:
            raise ConversionError(
                f"unexpected tensor {extra[0]} {list(shapes[extra[0]])} "
                f"({len(extra)} unexpected in all); PyNET expects exactly {len(layout)} "
                f"tensors {tf_variable_name(0, scope)} .. {tf_variable_name(len(layout) - 1, scope)}"
            )


def _candidate_configs(
    shapes: Mapping[str, tuple[int, ...]], scope: str, config: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    if config is not None:
        return [dict(config)]
    first = shapes.get(tf_variable_name(0, scope))
    in_channels = 4
    if first is not None and len(first) == 4 and first[2] in (12, 16):
        in_channels = first[2] // 4
    return [
        {"in_channels": in_channels, "instance_norm": norm, "instance_norm_level_3": norm3}
        for norm, norm3 in ((True, False), (True, True), (False, False), (False, True))
    ]


def _meta_model(config: Mapping[str, Any]) -> PyNET:
    with torch.device("meta"):
        return PyNET(**config)


def convert_tf_tensors(
    tensors: Mapping[str, np.ndarray] | TFCheckpointReader,
    *,
    config: Mapping[str, Any] | None = None,
    scope: str = "generator",
    strict: bool = True,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Map TF variables to a PyNET ``state_dict``.

    Args:
        tensors: ``{tf name: array}`` or an open :class:`TFCheckpointReader` (read lazily).
        config: PyNET keyword arguments; ``None`` infers ``in_channels`` from the first kernel and tries
            the instance-norm settings (the paper's first), keeping the one whose layout matches.
        scope: TF variable scope of the generator.
        strict: fail on missing or unexpected generator tensors (shape mismatches always fail). Tensors
            that are not generator weights (see :func:`classify_extra_tensor`) are ignored either way;
            :func:`skipped_tensors` lists them.

    Returns:
        ``(config, state_dict)``; the state dict loads with ``PyNET(**config).load_state_dict(sd, strict=strict)``.

    Raises:
        ConversionError: naming the first tensor that does not fit.
    """
    shapes = (
        tensors.shapes()
        if isinstance(tensors, TFCheckpointReader)
        else {name: tuple(np.shape(value)) for name, value in tensors.items()}
    )
    candidates = _candidate_configs(shapes, scope, config)
    first_error: ConversionError | None = None
    for candidate in candidates:
        layout = tf_layout(_meta_model(candidate), scope)
        generator_shapes, _ = _split_extra(layout, shapes, scope)
        try:
            _check(layout, generator_shapes, scope, strict)
        except ConversionError as exc:
            first_error = first_error or exc
            continue
        read = tensors.read if isinstance(tensors, TFCheckpointReader) else tensors.__getitem__
        state = {entry.torch_name: _to_torch(read(entry.tf_name)) for entry in layout if entry.tf_name in shapes}
        return candidate, state
    if first_error is None:  # pragma: no cover - candidates is never empty
        raise ConversionError("no PyNET configuration to try")
    if len(candidates) > 1:
        raise ConversionError(
            f"{first_error} (tried in_channels={candidates[0]['in_channels']} with and without "
            "instance norm; none matches)"
        )
    raise first_error


def skipped_tensors(
    shapes: Mapping[str, tuple[int, ...]], *, config: Mapping[str, Any], scope: str = "generator"
) -> dict[str, str]:
    """``{name: reason}`` of the tensors a conversion with ``config`` leaves out (optimizer slots, counters)."""
    return _split_extra(tf_layout(_meta_model(config), scope), shapes, scope)[1]


def to_tf_tensors(model: PyNET, scope: str = "generator") -> dict[str, np.ndarray]:
    """The inverse mapping: PyNET weights as TF checkpoint tensors (for tests and round trips)."""
    params = dict(model.named_parameters())
    out = {}
    for entry in tf_layout(model, scope):
        value = params[entry.torch_name].detach().cpu().float().numpy()
        out[entry.tf_name] = np.ascontiguousarray(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_tf_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    scope: str = "generator",
    overwrite: bool = False,
    push_to_hub: str | None = None,
) -> Path:
    """Convert a TF V2 checkpoint (prefix, ``.index`` or ``.data-*`` path) into ``out_dir``.

    Writes ``config.json`` + ``model.safetensors`` (``PyNET.save_pretrained``) and ``conversion.json``
    (source files with SHA-256, the variable mapping, the skipped non-generator tensors) into a temporary
    sibling folder, checks that the saved file holds every converted tensor unchanged, then renames it into
    place (files 0644). The result loads with
    ``PyNET.from_pretrained(out_dir, strict=True)``.

    Raises:
        InputError: the checkpoint cannot be read or ``out_dir`` exists (without ``overwrite``).
        ConversionError: the checkpoint does not match PyNET (first mismatch named).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
    try:
        reader = TFCheckpointReader(checkpoint)
    except TFCheckpointError as exc:
        raise InputError(str(exc)) from None
    try:
        resolved, state = convert_tf_tensors(reader, config=config, scope=scope, strict=True)
    except TFCheckpointError as exc:
        raise InputError(str(exc)) from None
    with torch.device("meta"):  # no random init: every tensor is assigned from the checkpoint
        model = PyNET(**resolved)
    model.load_state_dict(state, strict=True, assign=True)
    model.eval()

    with atomic_directory(out) as temp:
        model.save_pretrained(temp)
        from safetensors.torch import load_file

        saved = load_file(str(temp / "model.safetensors"))
        if set(saved) != set(state) or json.loads((temp / "config.json").read_text()) != resolved:
            raise ConversionError(f"the saved folder {temp} does not hold the converted model")
        for name, value in state.items():
            if not torch.equal(saved[name], value):
                raise ConversionError(f"round trip changed {name}; the saved folder is not trustworthy")
        sources = sorted(reader.prefix.parent.glob(f"{reader.prefix.name}.*"))
        layout = tf_layout(model, scope)
        all_shapes = reader.shapes()
        skipped = skipped_tensors(all_shapes, config=resolved, scope=scope)
        reasons: dict[str, int] = {}
        for reason in skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        (temp / "conversion.json").write_text(
            json.dumps(
                {
                    "source": str(reader.prefix),
                    "source_files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sources},
                    "config": resolved,
                    "scope": scope,
                    "tensors": len(layout),
                    "parameters": int(sum(v.numel() for v in state.values())),
                    "skipped": {
                        "count": len(skipped),
                        "by_reason": reasons,
                        "names": sorted(skipped),
                    },
                    "mapping": [[e.tf_name, list(e.tf_shape), e.torch_name, e.kind] for e in layout],
                },
                indent=1,
            )
            + "\n"
        )
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return out
