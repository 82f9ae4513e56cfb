"""Encoders: pages, JSON API, URLs and bokeh plots (the work is in services/encoders.py, training.py, evaluation.py)."""
