"""A Gradio app served in-process on 127.0.0.1 for the browser tests: one free port, launched, closed at the end."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(demo: Any) -> Iterator[str]:
    """Launch ``demo`` (a ``gr.Blocks``) on a free loopback port without blocking; yield its URL (``/`` ended)."""
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def example_photo(folder: Path, size: tuple[int, int] = (300, 200)) -> Path:
    """The Space's example photo (CC0) resized to ``size`` and saved as ``folder/photo.png``: small, so renders are
    quick in a browser test."""
    from PIL import Image

    from space.config import EXAMPLES_DIR

    photo = folder / "photo.png"
    Image.open(EXAMPLES_DIR / "chelsea.png").convert("RGB").resize(size).save(photo)
    return photo


def browser_space_settings(data: Path, **overrides: Any) -> Any:
    """The Space's settings the browser tests share: no depth model (approximate depth, nothing is downloaded),
    results and the study database under ``data``, an organizer token, a 640-px processing size."""
    from space.config import SpaceSettings

    values: dict[str, Any] = {
        "depth_model": str(data / "no-depth-model"),
        "results_dir": data / "results",
        "study_db": f"sqlite:///{data / 'study.db'}",
        "organizer_token": "organizer-secret",
        "max_render_side": 640,
    }
    return SpaceSettings(**{**values, **overrides})
