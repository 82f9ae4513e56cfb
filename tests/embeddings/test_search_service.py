"""services/search.py: nearest / nearest_to_vector / more_like_these and the per-process index cache."""
import numpy as np
import pytest

from tests.embeddings.map_factories import clustered_vectors, make_embedding_set
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services import search
from webapp.embeddings.services.index import build_for_set
from webapp.embeddings.services.vectors import load_embedding_set

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fresh_cache():
    search.forget_cached_indexes()
    yield
    search.forget_cached_indexes()


def brute_force(vectors: np.ndarray, row: int, k: int) -> list[int]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    d = 1 - unit @ unit[row]
    d[row] = np.inf
    return list(np.argsort(d, kind="stable")[:k])


def test_nearest_matches_brute_force_cosine_and_excludes_self():
    vectors, _ = clustered_vectors(40, 8)
    es = make_embedding_set(vectors=vectors, n=40)
    gids, _, _ = load_embedding_set(es)
    found = search.nearest(es, int(gids[5]), k=12)
    assert [r["id"] for r in found] == [int(gids[i]) for i in brute_force(vectors, 5, 12)]
    assert all(r["id"] != int(gids[5]) for r in found)
    distances = [r["distance"] for r in found]
    assert distances == sorted(distances) and 0 <= distances[0] < 0.1  # same cluster: nearly parallel
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    row = brute_force(vectors, 5, 1)[0]
    assert distances[0] == pytest.approx(1 - unit[5] @ unit[row], abs=1e-4)


def test_nearest_to_vector_and_dimension_check():
    vectors, labels = clustered_vectors(40, 8)
    es = make_embedding_set(vectors=vectors, n=40)
    found = search.nearest_to_vector(es, vectors[7] * 3.0, k=5)  # cosine: scale does not matter
    gids, _, row_of = load_embedding_set(es)
    assert found[0]["id"] == int(gids[7]) and found[0]["distance"] == pytest.approx(0, abs=1e-5)
    assert {labels[row_of[r["id"]]] for r in found} == {labels[7]}
    with pytest.raises(search.SearchError, match="has 3 dimensions, embedding set .* has 8"):
        search.nearest_to_vector(es, np.ones(3), k=5)
    with pytest.raises(search.SearchError, match="NaN"):
        search.nearest_to_vector(es, np.full(8, np.nan), k=5)


def test_unknown_galaxy_and_bad_k_raise_clear_errors():
    es = make_embedding_set(n=20)
    with pytest.raises(search.GalaxyNotInSet, match=r"galaxy 999999 is not in embedding set"):
        search.nearest(es, 999999)
    gid = int(load_embedding_set(es)[0][0])
    for bad in (0, -1, 10_000, "x"):
        with pytest.raises(search.SearchError, match="k must be"):
            search.nearest(es, gid, k=bad)


def test_more_like_these_excludes_positives_and_stays_in_cluster():
    vectors, labels = clustered_vectors(60, 8, clusters=3)
    es = make_embedding_set(vectors=vectors, n=60)
    gids, _, row_of = load_embedding_set(es)
    positives = [int(gids[i]) for i in (0, 3, 6)]  # all cluster 0
    for mode in ("mean", "rrf"):
        found = search.more_like_these(es, positives, k=10, mode=mode)
        assert len(found) == 10
        assert not set(positives) & {r["id"] for r in found}
        assert {labels[row_of[r["id"]]] for r in found} == {0}
    with pytest.raises(search.SearchError, match="at least one"):
        search.more_like_these(es, [])


def test_built_index_is_saved_beside_vectors_and_loaded_once(settings, monkeypatch):
    es = make_embedding_set(n=30)
    build_for_set(es)
    es.refresh_from_db()
    assert es.index_status == ArtifactStatus.READY and es.index_kind == "exact"
    assert es.index_path.rsplit("/", 1)[0] == es.vectors_path.rsplit("/", 1)[0]
    assert (settings.DATA_DIR / es.index_path).exists()
    loads = []
    real_load = search.SearchIndex.load
    monkeypatch.setattr(search.SearchIndex, "load", classmethod(lambda cls, p, **kw: loads.append(p) or real_load(p)))
    gid = int(load_embedding_set(es)[0][0])
    first = search.nearest(es, gid, 5)
    assert search.nearest(EmbeddingSet.objects.get(pk=es.pk), gid, 5) == first
    assert len(loads) == 1  # second query used the cached index
    build_for_set(EmbeddingSet.objects.get(pk=es.pk))  # a rebuild changes the stamp: reloaded once
    search.nearest(EmbeddingSet.objects.get(pk=es.pk), gid, 5)
    assert len(loads) == 2


def test_large_set_without_index_says_what_to_do(monkeypatch):
    es = make_embedding_set(n=20)
    monkeypatch.setattr(search, "FALLBACK_EXACT_MAX", 10)
    with pytest.raises(search.IndexNotReady, match="not built yet"):
        search.nearest(es, int(load_embedding_set(es)[0][0]))


def test_latest_set_for_picks_newest_set_containing_the_galaxy():
    older = make_embedding_set(n=10, name="older")
    survey = older.surveys.get()
    newer = make_embedding_set(survey=survey, name="newer", encoder=older.encoder)
    from webapp.catalog.models import Galaxy
    g = Galaxy.objects.filter(survey=survey).first()
    assert search.latest_set_for(g.pk) == newer
    EmbeddingSet.objects.filter(pk=newer.pk).update(status=ArtifactStatus.FAILED)
    assert search.latest_set_for(g.pk) == newer  # the per-survey list is reused for SETS_TTL seconds
    search.forget_cached_indexes()
    assert search.latest_set_for(g.pk) == older
    assert search.latest_set_for(10**9) is None


def test_compressed_index_writes_float16_rows_and_is_mmap_loaded(settings, monkeypatch):
    """Above the threshold the job builds IVF-PQ + float16 re-rank rows; web processes load it
    with IO_FLAG_MMAP and memory-map the rows, and neighbours match exact search."""
    from ml.search import RERANK_SUFFIX, IndexConfig

    vectors, _ = clustered_vectors(3000, 16, clusters=5)
    es = make_embedding_set(vectors=vectors, n=3000)
    cfg = IndexConfig(exact_below=100, compressed_above=2000, pq_m=4, pq_nlist=16, pq_kmeans_iter=5,
                      pq_train_min=3000, rerank_factor=8, tune_recall=0.95, tune_queries=50, tune_k=10)
    build_for_set(es, cfg)
    es.refresh_from_db()
    assert es.index_kind == "IVF-PQ" and es.index_config["config"]["compressed_above"] == 2000
    rows16 = np.load(settings.DATA_DIR / (es.index_path + RERANK_SUFFIX))
    assert rows16.dtype == np.float16 and rows16.shape == (3000, 16)
    flags = []
    real_load = search.SearchIndex.load
    monkeypatch.setattr(search.SearchIndex, "load",
                        classmethod(lambda cls, p, **kw: flags.append(kw) or real_load(p, **kw)))
    gids, _, _ = load_embedding_set(es)
    hits = 0
    for row in range(0, 3000, 150):
        found = [r["id"] for r in search.nearest(es, int(gids[row]), k=10)]
        hits += len(set(found) & {int(gids[i]) for i in brute_force(vectors, row, 10)})
    assert hits / (20 * 10) >= 0.9
    assert flags == [{"mmap": True}]
    assert isinstance(search.get_index(es).rows16, np.memmap)
