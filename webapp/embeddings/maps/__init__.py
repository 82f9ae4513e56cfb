"""Latent maps and the sky view: pages, JSON/binary API, URLs and bokeh figures (the work is in services/maps.py, map_data.py)."""
