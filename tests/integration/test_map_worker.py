"""Map job -> LatentMap -> page JSON, and the search index job, through a real Celery worker."""
import numpy as np
import pytest

from tests.embeddings.map_factories import clustered_vectors, make_embedding_set
from tests.integration.conftest import wait_for_job
from webapp.embeddings.models import EmbeddingSet, LatentMap
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {"n_neighbors": 8, "n_epochs": 30, "seed": 0}


@pytest.fixture
def viewer(role_groups, make_user, client):
    client.force_login(make_user("viewer"))
    return client


def test_sampled_map_job_fans_out_chunks_and_the_page_serves_it(celery_worker_proc, viewer):
    vectors, labels = clustered_vectors(150, 8, clusters=2, seed=3)
    es = make_embedding_set(vectors=vectors, n=150)
    cfg = {**FAST, "sample_threshold": 60, "sample_size": 60, "chunk_size": 50}
    job = services.create_job("umap", {"embedding_set_id": es.pk, "config": cfg})
    done = wait_for_job(job.pk, timeout=240, proc=celery_worker_proc)
    assert (done.status, done.progress) == ("succeeded", 1.0), done.error
    chunks = Job.objects.filter(parent=done, kind="umap_chunk").order_by("id")
    assert [(c.params["start"], c.params["stop"], c.status) for c in chunks] == [
        (0, 50, "succeeded"), (50, 100, "succeeded"), (100, 150, "succeeded")]
    lm = LatentMap.objects.get(pk=done.result["latent_map_id"])
    assert (lm.status, lm.n, lm.params["chunks"]) == ("ready", 150, 3)

    # The page's data: every point, in row order, with the clusters apart on the map.
    r = viewer.get(f"/api/maps/{lm.pk}/points?fields=row,id,x,y&limit=1000")
    assert r.status_code == 200
    pts = r.json()["points"]
    assert pts["row"] == list(range(150)) and r.json()["total"] == 150
    xy = np.stack([pts["x"], pts["y"]], axis=1)
    assert np.linalg.norm(xy[labels == 0].mean(0) - xy[labels == 1].mean(0)) > 3
    page = viewer.get(f"/maps/{lm.pk}/")
    assert page.status_code == 200 and page.context["meta"]["n"] == 150


def test_index_job_builds_and_search_uses_it(celery_worker_proc, viewer):
    es = make_embedding_set(n=60)
    job = services.create_job("build_index", {"embedding_set_id": es.pk})
    done = wait_for_job(job.pk, timeout=120, proc=celery_worker_proc)
    assert done.status == "succeeded", done.error
    es = EmbeddingSet.objects.get(pk=es.pk)
    assert (es.index_status, es.index_kind, done.result["index_kind"]) == ("ready", "exact", "exact")
    from webapp.embeddings.services.vectors import load_embedding_set
    g = int(load_embedding_set(es)[0][0])
    data = viewer.get(f"/api/search/neighbours/{g}?k=5").json()
    assert len(data["results"]) == 5 and data["embedding_set"]["index"] == "exact"
