"""Models for the embeddings app (see DESIGN.md)."""
