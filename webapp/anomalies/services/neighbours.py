"""Look-alikes of a candidate, for the review page ("what else looks like this?").

One small function so the source can be swapped: it asks the map/search engineer's
service (webapp.embeddings.services.search.nearest, faiss index cached per process).
When that cannot answer (a huge set whose index is not built yet) the page shows the
reason instead of failing.
"""
from __future__ import annotations

from webapp.embeddings.services import search


def similar(embedding_set, galaxy_id: int, k: int = 8) -> tuple[list[dict], str]:
    """([{"id", "distance"}, ...] nearest first, self excluded; "" or why there are none)."""
    try:
        return search.nearest(embedding_set, galaxy_id, k), ""
    except search.SearchError as exc:
        return [], str(exc)
