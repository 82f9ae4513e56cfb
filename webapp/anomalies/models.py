"""Models for the anomalies app (see DESIGN.md)."""
