"""The depth models this project knows by name: hub id, short name, licence, size and citation.

Every entry point (``bokeh-model render/depth/fetch --depth-model``, ``evaluation.ebb build --depth-model``,
``evaluation/run.py --depth-model``, the Space's depth choice) takes a short name from :data:`DEPTH_MODELS` or any
``transformers`` depth model (a hub id or a local folder); :func:`resolve_depth_model` turns a short name into its
hub id, so ``dpt-hybrid`` and ``Intel/dpt-hybrid-midas`` are the same model everywhere (one shared estimator, one
depth cache). Both known models output relative inverse depth (disparity), which
:class:`bokeh_model.depth.DepthEstimator` min-max normalises per image the same way.

This module imports nothing heavy, so the CLI's help and the Space's controls can read the table cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEPTH_MODELS",
    "DEPTH_MODEL_ENV",
    "FALLBACK_DEPTH_MODEL",
    "DepthModelInfo",
    "default_depth_model",
    "depth_model_info",
    "depth_model_label",
    "depth_model_names",
    "depth_model_record",
    "resolve_depth_model",
]

DEPTH_MODEL_ENV = "BOKEH_DEPTH_MODEL"


@dataclass(frozen=True)
class DepthModelInfo:
    """One known depth model.

    Attributes:
        name: short name accepted everywhere a depth model is (``dpt-hybrid``).
        hub_id: the Hugging Face model id that is fetched and loaded.
        title: what a person reads (``DPT-Hybrid (MiDaS v3.0)``).
        year: year of the paper.
        license: the licence of the weights, as stated on the model card.
        parameters: parameter count.
        citation: the paper to cite.
    """

    name: str
    hub_id: str
    title: str
    year: int
    license: str
    parameters: int
    citation: str

    def summary(self) -> str:
        """One line: title, year, size and licence."""
        return f"{self.title}, {self.year}, {self.parameters / 1e6:.1f} M parameters, licence {self.license}"


DEPTH_MODELS: dict[str, DepthModelInfo] = {
    info.name: info
    for info in (
        DepthModelInfo(
            name="dpt-hybrid",
            hub_id="Intel/dpt-hybrid-midas",
            title="DPT-Hybrid (MiDaS v3.0)",
            year=2021,
            license="Apache-2.0",
            parameters=123_000_000,  # "DPT-Hybrid ... 123M parameters" (Ranftl et al. 2021, Table 1)
            citation="R. Ranftl, A. Bochkovskiy, V. Koltun, 'Vision Transformers for Dense Prediction', ICCV 2021 "
            "(https://arxiv.org/abs/2103.13413)",
        ),
        DepthModelInfo(
            name="depth-anything-v2-small",
            hub_id="depth-anything/Depth-Anything-V2-Small-hf",
            title="Depth Anything V2 Small",
            year=2024,
            # Only Small is Apache-2.0; the Base, Large and Giant weights are CC BY-NC 4.0 (model cards).
            license="Apache-2.0",
            parameters=24_800_000,
            citation="L. Yang, B. Kang, Z. Huang, Z. Zhao, X. Xu, J. Feng, H. Zhao, 'Depth Anything V2', "
            "NeurIPS 2024 (https://arxiv.org/abs/2406.09414)",
        ),
    )
}
FALLBACK_DEPTH_MODEL = DEPTH_MODELS["dpt-hybrid"].hub_id


def depth_model_names() -> list[str]:
    """The short names, default model first."""
    return list(DEPTH_MODELS)


def resolve_depth_model(model: str | None) -> str:
    """A short name -> its hub id (case-insensitive); a hub id or a folder stays as given (trimmed).

    ``None`` or an empty string means :func:`default_depth_model`. A local folder that happens to be called like a
    short name is reached with a path (``./dpt-hybrid``).
    """
    text = str(model or "").strip()
    if not text:
        return default_depth_model()
    info = DEPTH_MODELS.get(text.lower())
    return info.hub_id if info is not None else text


def default_depth_model() -> str:
    """``$BOKEH_DEPTH_MODEL`` (a short name, hub id or folder) when set and non-empty, else DPT-Hybrid's hub id."""
    text = os.environ.get(DEPTH_MODEL_ENV, "").strip()
    return resolve_depth_model(text) if text else FALLBACK_DEPTH_MODEL


def depth_model_info(model: str | None) -> DepthModelInfo | None:
    """The table entry of a short name or hub id (``None`` for any other model or folder)."""
    model_id = resolve_depth_model(model)
    return next((info for info in DEPTH_MODELS.values() if info.hub_id.lower() == model_id.lower()), None)


def depth_model_label(model: str | None) -> str:
    """``Depth Anything V2 Small (depth-anything/Depth-Anything-V2-Small-hf)``, or the id itself when unknown."""
    model_id = resolve_depth_model(model)
    info = depth_model_info(model_id)
    return f"{info.title} ({info.hub_id})" if info is not None else model_id


def depth_model_record(model: str | None) -> dict[str, Any]:
    """What a run record or a dataset card stores about the depth model that ran."""
    model_id = resolve_depth_model(model)
    info = depth_model_info(model_id)
    if info is None:
        return {"model": model_id, "name": None, "license": "see the model's own card", "citation": None}
    return {"model": info.hub_id, "name": info.name, "license": info.license, "citation": info.citation}
