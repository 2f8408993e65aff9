"""Exceptions shared by the library, the CLIs and the app.

Every error says what is wrong and, where the user can fix it, how. The app turns these into
on-screen messages and the CLIs into a one-line error and a non-zero exit code.
"""

from __future__ import annotations

__all__ = ["BokehError", "InputError", "ModelUnavailableError"]


class BokehError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(BokehError, ValueError):
    """The caller gave something unusable: an unreadable image, a bad parameter, a NaN depth map."""


class ModelUnavailableError(BokehError, RuntimeError):
    """Weights or a model a method needs are not present on this machine.

    The message names what is missing and how to provide it (local folder, hub id, cache path).
    Nothing is ever downloaded behind the user's back and random weights are never substituted.
    """
