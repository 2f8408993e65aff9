"""Speed benchmarks that print their figures with versions and device.

Run one from the repository root as a module, e.g. ``python -m benchmarks.render_speed --help`` (``make bench``
runs them all). They import the installed package (``make setup`` installs this checkout in editable mode), and
``fetch_speed`` / ``study_load`` reuse helpers from ``tests/`` as ``tests._local_server`` etc.
"""
