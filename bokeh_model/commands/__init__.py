"""Sub-commands of ``python -m bokeh_model``; one module each (``HELP``, ``add_arguments``, ``run``)."""
