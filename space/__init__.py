"""The Gradio app (Hugging Face Space): render, compare, leaderboard, user study, status.

The UI modules hold no model or metric logic: they convert UI values, call ``bokeh_model``,
``evaluation`` and ``user_study``, and convert back. Library errors become on-screen messages.
"""
