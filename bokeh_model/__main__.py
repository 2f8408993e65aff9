"""``python -m bokeh_model``: see :mod:`bokeh_model.cli`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
