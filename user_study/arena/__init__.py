"""The Bokeh Arena: visitors judge two anonymous renders of their own photo; a Bradley-Terry board grows.

- :mod:`~user_study.arena.storage`: the tables (in the study's database);
- :mod:`~user_study.arena.pairing`: which methods a battle shows (joined by name through the registry);
- :mod:`~user_study.arena.render`: both renders with one depth map;
- :mod:`~user_study.arena.service`: battles, votes and their integrity rules, the board;
- :mod:`~user_study.arena.leaderboard`: Bradley-Terry with bootstrap intervals, win rates, heatmap, flags;
- :mod:`~user_study.arena.api`: the JSON API (``/arena-api/v1``); :mod:`~user_study.arena.cli`: organizers.

No Gradio here: the Space's tab is ``space/arena_tab.py``.
"""
