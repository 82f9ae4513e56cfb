"""Collections: pages and JSON API (the work is in services/collections.py)."""
