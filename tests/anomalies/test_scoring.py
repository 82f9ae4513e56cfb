"""The anomaly_scores job: files, rows, idempotent re-runs, errors, the map colour layer."""
import numpy as np
import pytest

from tests.anomalies.factories import blob_vectors, make_embedding_set, make_score_set
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.files import load_scores
from webapp.anomalies.services.layers import anomaly_colour_layers
from webapp.anomalies.services.scoring import ScoringError, anomaly_config, start_scoring
from webapp.embeddings.services.colours import colour_providers, resolve_values
from webapp.jobs import services as jobs
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def outlier_vectors():
    """50 galaxies pointing along e0 and one pointing away from e0 in every other dimension
    (a cosine outlier that axis-parallel isolation trees also isolate quickly), row 50."""
    rng = np.random.default_rng(2)
    x = np.concatenate([np.eye(8)[0] * 5 + 0.5 * rng.normal(size=(50, 8)), [[0, 3, -3, 3, -3, 3, -3, 3]]])
    return x.astype(np.float32)


def run_job(es, **params):
    job = jobs.create_job("anomaly_scores", {"embedding_set_id": es.pk, **params}, dispatch=False)
    assert jobs.execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    return Job.objects.get(pk=job.pk)


def test_score_job_stores_every_galaxy_with_method_and_parameters():
    es, ids = make_embedding_set(outlier_vectors())
    job = run_job(es, methods=["iforest", "knn", "lof"], combine="max")
    score_set = ScoreSet.objects.get(pk=job.result["score_set_id"])
    assert (score_set.status, score_set.n, score_set.job_id) == ("ready", 51, job.pk)
    assert score_set.methods == ["iforest", "knn", "lof"]
    assert score_set.config["iforest_trees"] == 200 and score_set.config["lof_k"] == 20
    assert score_set.config["combine"] == "max"
    assert job.progress == 1.0 and job.result["n"] == 51 and job.result["methods"] == ["iforest", "knn", "lof"]
    # columnar files in the embedding set's row order, memory-mapped; no per-galaxy rows
    arrays = load_scores(score_set)
    assert arrays.ids.tolist() == ids
    assert isinstance(arrays.combined, np.memmap) and arrays.combined.shape == (51,)
    outlier = arrays.values_at(ids[50])
    assert set(outlier["scores"]) == {"iforest", "knn", "lof"}
    assert outlier["ranks"] == {"iforest": 1.0, "knn": 1.0, "lof": 1.0}
    assert outlier["combined"] == 1.0 and float(arrays.combined.max()) == 1.0
    assert arrays.values_at(10**12) is None
    # sorted lists come from orders the job precomputed (stable: ties keep catalogue order)
    assert (arrays.directory / "order_combined.npy").exists()
    assert arrays.order("combined")[0] == ids[50] and arrays.order("lof")[0] == ids[50]
    expected = np.asarray(ids)[np.argsort(-np.asarray(arrays.scores["knn"]), kind="stable")]
    np.testing.assert_array_equal(arrays.order("knn"), expected)
    np.testing.assert_allclose(arrays.scores["knn"][50], outlier["scores"]["knn"], rtol=1e-5)


def test_rerunning_the_same_job_rewrites_instead_of_duplicating():
    es, ids = make_embedding_set(outlier_vectors())
    job = jobs.create_job("anomaly_scores", {"embedding_set_id": es.pk, "methods": ["knn"]}, dispatch=False)
    jobs.execute_job(job.pk)
    first_path = ScoreSet.objects.get(job=job).scores_path
    Job.objects.filter(pk=job.pk).update(status="queued")  # as if the message were redelivered
    assert jobs.execute_job(job.pk) == "succeeded"
    assert ScoreSet.objects.filter(job=job).count() == 1
    score_set = ScoreSet.objects.get(job=job)
    assert load_scores(score_set).combined.shape == (51,)
    assert score_set.scores_path != first_path and score_set.status == "ready"
    from django.conf import settings
    from pathlib import Path
    assert not (Path(settings.DATA_DIR) / first_path).exists()          # the first run's files are gone


def test_bad_requests_fail_with_clear_messages():
    with pytest.raises(ScoringError, match="unknown anomaly methods \\['svm'\\]"):
        anomaly_config(["knn", "svm"])
    with pytest.raises(ScoringError, match="combine must be"):
        anomaly_config(["knn"], "median")
    es, _ = make_embedding_set(outlier_vectors())
    es.status = "building"
    es.save()
    with pytest.raises(ScoringError, match="not ready"):
        start_scoring(es)
    missing = jobs.create_job("anomaly_scores", {"embedding_set_id": 999999}, dispatch=False)
    assert jobs.execute_job(missing.pk) == "failed"
    assert "no longer exists" in Job.objects.get(pk=missing.pk).message


def test_tiny_embedding_set_is_refused_and_leaves_no_ready_set():
    es, _ = make_embedding_set(np.ones((2, 4), np.float32), slug="tiny")
    job = jobs.create_job("anomaly_scores", {"embedding_set_id": es.pk}, dispatch=False)
    assert jobs.execute_job(job.pk) == "failed"
    assert "at least 3" in Job.objects.get(pk=job.pk).message
    assert not ScoreSet.objects.filter(status="ready").exists()


def test_colour_layers_follow_the_embedding_set_rows():
    assert anomaly_colour_layers in colour_providers()  # registered by AnomaliesConfig.ready()
    score_set, ids = make_score_set(outlier_vectors())
    layers = anomaly_colour_layers(score_set.embedding_set)
    assert [layer.key for layer in layers] == ["anomaly", "anomaly:iforest", "anomaly:knn", "anomaly:lof"]
    combined = layers[0]
    assert callable(combined.values)   # computed only when someone colours by it (not for the menu)
    values = resolve_values(combined)
    assert combined.kind == "numeric" and combined.group == "Anomalies" and len(values) == 51
    assert int(np.argmax(values)) == 50 and combined.meta["score_set"] == score_set.pk


def test_colour_layers_empty_without_a_ready_score_set():
    es, _ = make_embedding_set(blob_vectors())
    assert anomaly_colour_layers(es) == []


def test_retention_keeps_the_last_k_score_sets_and_their_rankings(settings, make_user):
    """settings.KEEP_ROUNDS score sets per embedding set survive each scoring job; older
    ones lose their rows, files and rankings, while people's reviews stay."""
    from pathlib import Path

    from webapp.anomalies.models import PersonalRanking, Review
    from webapp.anomalies.services import retention

    settings.KEEP_ROUNDS = 2
    es, ids = make_embedding_set(outlier_vectors())
    user = make_user("labeler")
    first = ScoreSet.objects.get(pk=run_job(es, methods=["knn"]).result["score_set_id"])
    Review.objects.create(user=user, galaxy_id=ids[0], score_set=first, interest=5)
    ranking = PersonalRanking.objects.create(user=user, score_set=first, status="ready",
                                             ranking_path=f"anomalies/rank999-x/ranking.npz")
    first_dir = Path(settings.DATA_DIR) / first.scores_path
    assert first_dir.is_dir()
    run_job(es, methods=["knn"])
    assert ScoreSet.objects.filter(pk=first.pk).exists()                # 2 kept
    third = ScoreSet.objects.get(pk=run_job(es, methods=["knn"]).result["score_set_id"])
    assert not ScoreSet.objects.filter(pk=first.pk).exists() and not first_dir.exists()
    assert not PersonalRanking.objects.filter(pk=ranking.pk).exists()
    assert Review.objects.get(galaxy_id=ids[0]).score_set_id is None   # the verdict stays
    assert ScoreSet.objects.filter(embedding_set=es).count() == 2
    assert load_scores(third).values_at(ids[50])["combined"] == 1.0
    assert retention.prune_score_sets(es, keep=1) != [third.pk]
    assert ScoreSet.objects.filter(embedding_set=es).get().pk == third.pk   # the newest always stays


def test_knn_scores_query_the_sets_saved_index_instead_of_building_another(monkeypatch):
    """Issue 14: the anomaly kNN graph reuses the built search index (queried in blocks)."""
    from ml import anomaly
    from ml.search import IndexConfig, SearchIndex
    from webapp.embeddings.services.index import build_for_set
    from webapp.embeddings.services.search import forget_cached_indexes

    es, ids = make_embedding_set(outlier_vectors())
    without = load_scores(ScoreSet.objects.get(pk=run_job(es, methods=["knn", "lof"]).result["score_set_id"]))
    build_for_set(es, IndexConfig(exact_below=10**6))            # an exact saved index: same answers
    es.refresh_from_db()
    forget_cached_indexes()
    builds = []
    real_build = SearchIndex.build
    monkeypatch.setattr(anomaly.SearchIndex, "build", classmethod(
        lambda cls, *a, **k: builds.append(1) or real_build.__func__(cls, *a, **k)))
    with_index = load_scores(ScoreSet.objects.get(pk=run_job(es, methods=["knn", "lof"]).result["score_set_id"]))
    assert builds == []                                          # no second index was built
    for method in ("knn", "lof"):
        np.testing.assert_allclose(with_index.scores[method], without.scores[method], rtol=1e-4, atol=1e-6)
    assert with_index.order("combined")[0] == ids[50]
    # above the reference size the scores search a sample: the saved index is not even loaded
    from webapp.anomalies.services.scoring import saved_index
    assert saved_index(es, anomaly.AnomalyConfig()) is not None
    assert saved_index(es, anomaly.AnomalyConfig(knn_reference_max=es.n - 1)) is None
