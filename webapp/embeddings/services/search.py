"""Similarity search over an EmbeddingSet: "galaxies like this one".

Public interface (used by the map, the search pages, the galaxy page and other apps):
  nearest(embedding_set, galaxy_id, k=12)  -> [{"id": galaxy id, "distance": float}, ...] (self excluded)
  nearest_to_vector(embedding_set, vector, k) -> same, for any vector in the set's space
  more_like_these(embedding_set, galaxy_ids, k, mode) -> same, positives excluded
  latest_set_for(galaxy_id) -> newest ready EmbeddingSet that contains the galaxy, or None

Distances are cosine distances 1 - cos(a, b) in [0, 2] for the default index metric
(see ml/search.py); lower is closer.

The faiss index a `build_index` job saved beside the vectors is loaded once per process
with faiss.IO_FLAG_MMAP (so all web processes share one page-cached copy; a compressed
index's float16 re-rank rows are memory-mapped too) and cached by (set, index file, build
stamp), so a rebuilt index replaces the old one on the next query.  Before the index exists, sets of up to FALLBACK_EXACT_MAX rows are
searched with an exact in-memory index built on first use (a few ms per query up to
~3e5 rows); larger sets raise IndexNotReady with a message saying what to do.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from django.conf import settings

from ml.search import IndexConfig, SearchIndex
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services.vectors import load_embedding_set

FALLBACK_EXACT_MAX = 300_000  # rows; an exact query at 3e5 x 128 takes ~8 ms on one core
MAX_K = 500                   # largest k any caller may ask for (pages show 12-100)


class SearchError(ValueError):
    """A query that cannot be answered; the message is shown to the user (HTTP 400)."""


class GalaxyNotInSet(SearchError, KeyError):
    """The galaxy is not part of this embedding set (HTTP 404 for an unknown id)."""

    def __str__(self):  # KeyError would wrap the message in quotes
        return self.args[0] if self.args else ""


class IndexNotReady(SearchError):
    """The set is too large to search exactly and its index has not been built."""


_lock = threading.Lock()
_cache: dict[tuple, SearchIndex] = {}


def _index_key(es: EmbeddingSet) -> tuple:
    if es.index_status == ArtifactStatus.READY and es.index_path:
        return (es.pk, str(settings.DATA_DIR), es.index_path, (es.index_config or {}).get("built_at", ""))
    return (es.pk, str(settings.DATA_DIR), "exact-fallback", es.checksum)


def get_index(es: EmbeddingSet) -> SearchIndex:
    """The set's SearchIndex, loaded (or built exactly in memory) once per process."""
    if es.status != ArtifactStatus.READY:
        raise SearchError(f"embedding set {es.pk} is {es.status}, not ready")
    key = _index_key(es)
    index = _cache.get(key)
    if index is not None:
        return index
    with _lock:
        index = _cache.get(key)
        if index is None:
            index = _load_or_build(es, key)
            for old in [k for k in _cache if k[0] == es.pk]:  # drop superseded versions of this set
                del _cache[old]
            _cache[key] = index
    return index


def _load_or_build(es: EmbeddingSet, key: tuple) -> SearchIndex:
    if key[2] != "exact-fallback":
        path = Path(settings.DATA_DIR) / es.index_path
        if path.exists():
            return SearchIndex.load(path, mmap=True)
    if es.n > FALLBACK_EXACT_MAX:
        raise IndexNotReady(f"the search index of embedding set {es.pk} ({es.n:,} galaxies) is not built "
                            "yet; a curator can build it from the map page")
    _, vectors, _ = load_embedding_set(es)
    cfg = IndexConfig(exact_below=len(vectors) + 1, tune_recall=0.0)  # exact: flat index
    return SearchIndex.build(np.asarray(vectors), cfg)


def forget_cached_indexes() -> None:
    """Drop every cached index and set list (tests; after deleting files)."""
    with _lock:
        _cache.clear()
        _sets_cache.clear()


def index_description(es: EmbeddingSet) -> str:
    """Human words for what answers queries on this set, e.g. 'IVF (nprobe 32)'."""
    if es.index_status == ArtifactStatus.READY and es.index_path:
        tuning = (es.index_config or {}).get("tuning") or {}
        extra = f" ({tuning['param'].split('_')[-1]} {tuning['value']})" if tuning.get("param") else ""
        return f"{es.index_kind or 'faiss'}{extra}"
    if es.index_status == ArtifactStatus.BUILDING:
        return "exact (index building)"
    return "exact (no index built)"


# ----------------------------------------------------------------- queries

def check_k(k) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise SearchError(f"k must be an integer, got {k!r}") from None
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _row_of(es: EmbeddingSet, galaxy_id) -> int:
    _, _, row_of = load_embedding_set(es)
    try:
        return row_of[int(galaxy_id)]
    except (KeyError, TypeError, ValueError):
        raise GalaxyNotInSet(f"galaxy {galaxy_id} is not in embedding set {es.pk}") from None


def _results(es: EmbeddingSet, distances: np.ndarray, rows: np.ndarray) -> list[dict]:
    ids, _, _ = load_embedding_set(es)
    return [{"id": int(ids[r]), "distance": float(d)}
            for d, r in zip(distances, rows) if r >= 0 and np.isfinite(d)]


def nearest(embedding_set: EmbeddingSet, galaxy_id: int, k: int = 12) -> list[dict]:
    """The k galaxies nearest to ``galaxy_id`` in the set, nearest first, itself excluded."""
    k = check_k(k)
    row = _row_of(embedding_set, galaxy_id)
    distances, rows = get_index(embedding_set).query_by_id(row, k)
    return _results(embedding_set, distances, rows)


def nearest_to_vector(embedding_set: EmbeddingSet, vector, k: int = 12) -> list[dict]:
    """The k galaxies nearest to an arbitrary vector (D,) in the set's space, nearest first."""
    k = check_k(k)
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape[0] != embedding_set.dim:
        raise SearchError(f"vector has {vector.shape[0]} dimensions, embedding set {embedding_set.pk} "
                          f"has {embedding_set.dim}")
    if not np.isfinite(vector).all():
        raise SearchError("vector contains NaN or inf")
    distances, rows = get_index(embedding_set).query(vector[None, :], k)
    return _results(embedding_set, distances[0], rows[0])


def more_like_these(embedding_set: EmbeddingSet, galaxy_ids: Iterable[int], k: int = 50,
                    mode: str = "mean") -> list[dict]:
    """k galaxies like a set of positives (positives excluded).

    mode "mean" queries with the mean direction; "rrf" fuses per-positive lists (for
    diverse positives).  In "rrf" mode "distance" is minus the fused score.
    """
    k = check_k(k)
    ids = list(dict.fromkeys(int(g) for g in galaxy_ids))
    if not ids:
        raise SearchError("select at least one galaxy")
    if len(ids) > MAX_K:
        raise SearchError(f"at most {MAX_K} positives, got {len(ids)}")
    if mode not in ("mean", "rrf"):
        raise SearchError(f"mode must be 'mean' or 'rrf', got {mode!r}")
    rows = [_row_of(embedding_set, g) for g in ids]
    distances, found = get_index(embedding_set).query_many_positives(rows, k, mode=mode)
    return _results(embedding_set, distances, found)


# ----------------------------------------------------------------- which set

def ready_sets():
    return EmbeddingSet.objects.filter(status=ArtifactStatus.READY)


SETS_TTL = 5.0  # seconds the "ready sets of this survey" list is reused (a busy API does this per request)
_sets_cache: dict[tuple, tuple[float, list]] = {}


def _ready_sets_of_survey(survey_id: int) -> list[EmbeddingSet]:
    now = time.monotonic()
    key = (str(settings.DATA_DIR), survey_id)  # a data dir is one site (tests switch it)
    hit = _sets_cache.get(key)
    if hit is not None and now - hit[0] < SETS_TTL:
        return hit[1]
    sets = list(ready_sets().filter(surveys=survey_id).select_related("encoder").order_by("-created_at", "-id"))
    _sets_cache[key] = (now, sets)
    return sets


def latest_set_for(galaxy_id: int, survey_id: int | None = None) -> EmbeddingSet | None:
    """The newest ready EmbeddingSet whose vectors include this galaxy."""
    if survey_id is None:
        from webapp.catalog.models import Galaxy
        survey_id = Galaxy.objects.filter(pk=galaxy_id).values_list("survey_id", flat=True).first()
        if survey_id is None:
            return None
    for es in _ready_sets_of_survey(survey_id):
        try:
            if int(galaxy_id) in load_embedding_set(es)[2]:
                return es
        except (OSError, ValueError):  # files gone: skip this set rather than fail the page
            continue
    return None


# ----------------------------------------------------------------- presenting results

def galaxy_cards(results: list[dict], thumb_size: int = 96) -> list[dict]:
    """Results ({"id", "distance"?, ...}) with source id, survey, position, page and thumbnail
    URLs added, in the same order (one query)."""
    from webapp.catalog.models import Galaxy
    from webapp.catalog.services import static_thumbs
    from webapp.catalog.services.browse import galaxy_card

    wanted = [int(r["id"]) for r in results]
    rows = {g.pk: g for g in Galaxy.objects.filter(pk__in=wanted).select_related("survey").only(
        "id", "source_id", "ra", "dec", "image_index", "survey__slug", "survey__name", *static_thumbs.SURVEY_ONLY)}
    cards = []
    for r in results:
        g = rows.get(int(r["id"]))
        if g is None:
            continue
        cards.append({**r, **galaxy_card(g, thumbs={"thumb_url": thumb_size}, detail=False)})
    return cards
