"""Similarity search: page, galaxy-page panel and JSON API (the work is in services/queries.py, search.py, sky.py, upload.py)."""
