"""Entry point of the Hugging Face Space: ``python app.py`` starts the Gradio app.

Host and port come from the usual Gradio settings (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``;
0.0.0.0:7860 on a Space). All the UI lives in ``space/``.
"""

from __future__ import annotations

import contextlib

# ZeroGPU hardware: `spaces` must be imported before torch touches CUDA; absent elsewhere, and not needed there.
with contextlib.suppress(ImportError):
    import spaces  # noqa: F401

from space.app import build_app, launch

demo = build_app()

if __name__ == "__main__":
    launch(demo)
