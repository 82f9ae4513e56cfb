"""Models for the labeling app (see DESIGN.md)."""
