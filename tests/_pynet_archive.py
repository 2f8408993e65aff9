"""A zip laid out like the authors' PyNET_Bokeh_pretrained.zip, holding a full-size PyNET checkpoint in TF format.

The weights are random (no trained weights can be downloaded here); their outputs mean nothing. Written with
``bokeh_model.tf_checkpoint`` (TensorFlow reads what it writes, see tests/fixtures/make_tf_fixtures.py), with Adam
slots for a few variables, ``beta1_power`` / ``beta2_power`` and a step counter, as a plain ``Saver()`` stores them.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from bokeh_model.convert_tf_checkpoint import to_tf_tensors
from bokeh_model.modeling_pynet import PyNET
from bokeh_model.tf_checkpoint import write_tf_checkpoint

__all__ = ["build_pynet_zip", "random_pynet"]


def random_pynet(seed: int = 0) -> PyNET:
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = PyNET()
    model.to_empty(device="cpu")
    with torch.no_grad():  # every tensor random (biases and norms too), so that any misplacement shows
        for param in model.parameters():
            param.normal_(0.0, 0.05)
    return model.eval()


def build_pynet_zip(*, slots: int = 4) -> tuple[bytes, PyNET]:
    """``(zip bytes, the model whose weights it holds)``; the checkpoint sits at
    ``PyNET_Bokeh_pretrained/models/original/pynet_bokeh_level_0`` (what the authors' test script restores)."""
    model = random_pynet()
    tensors = to_tf_tensors(model)
    for index in range(slots):
        name = "generator/Variable" if index == 0 else f"generator/Variable_{index}"
        tensors[f"{name}/Adam"] = np.zeros_like(tensors[name])
        tensors[f"{name}/Adam_1"] = np.ones_like(tensors[name])
    tensors["beta1_power"] = np.float32(0.9)
    tensors["beta2_power"] = np.float32(0.999)
    tensors["global_step"] = np.int64(123)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        write_tf_checkpoint(Path(folder) / "pynet_bokeh_level_0", tensors)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("PyNET_Bokeh_pretrained/README.txt", "pre-trained PyNET-Bokeh\n")
            for path in sorted(Path(folder).iterdir()):
                archive.write(path, f"PyNET_Bokeh_pretrained/models/original/{path.name}")
    return buffer.getvalue(), model
