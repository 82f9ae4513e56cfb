"""The Python client (client/, import latentsky) against a live server with Bearer tokens.

pytest-django's live_server runs the real Django app in a thread on 127.0.0.1; the client
talks HTTP to it as a notebook would.  Jobs run on the job engine in a thread of the test
(execute_job), as a worker would, while the client waits on them.
"""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

latentsky = pytest.importorskip("latentsky", reason="the client is not installed: pip install -e ./client")

from latentsky import BadRequest, Client, Conflict, JobFailed, NotFound, PermissionDenied  # noqa: E402
from latentsky.errors import AuthenticationFailed  # noqa: E402
from tests.anomalies.factories import make_score_set  # noqa: E402
from tests.embeddings.map_factories import make_embedding_set, make_latent_map  # noqa: E402
from tests.labeling.factories import make_encoder_task, make_task  # noqa: E402
from webapp.accounts.tokens import create_token  # noqa: E402
from webapp.catalog.models import Galaxy  # noqa: E402
from webapp.jobs import services as job_services  # noqa: E402
from webapp.labeling.models import Label  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def roles(transactional_db, settings):
    # A transactional test flushes the role groups a data migration made; put them back.
    from django.contrib.auth.models import Group
    from webapp.accounts.roles import ROLES
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for role in ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def sky(roles, live_server, make_user):
    """client(role) -> a latentsky.Client with a Bearer token of a user of that role."""
    def make(role: str = "curator", read_only: bool = False) -> Client:
        user = make_user(role, f"{role}-client{'-ro' if read_only else ''}")
        _, plain = create_token(user, "notebook", read_only=read_only)
        return Client(live_server.url, token=plain, timeout=30)
    return make


@pytest.fixture
def jobs_run_here(monkeypatch):
    """Jobs are not sent to a broker: the test runs them (execute_job) when it wants to."""
    sent = []
    monkeypatch.setattr(job_services, "dispatch_job", sent.append)
    return sent


def galaxy_ids(survey) -> list[int]:
    return list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))


def embedded_by_a_real_encoder():
    """A task whose embedding set is the real output of a tiny encoder (search by image embeds with it)."""
    from webapp.catalog.services.store_cache import read_images
    from webapp.embeddings.services.encoding import embed_images
    from webapp.embeddings.services.vectors import write_embedding_set

    task, ids = make_encoder_task(n=12, slug="encoded")
    es = task.embedding_set
    images = read_images(task.surveys.get().store_abspath, list(range(12)))
    write_embedding_set(es, np.asarray(ids), np.asarray(embed_images(es.encoder, images), dtype=np.float32))
    return task, ids, np.asarray(images, dtype=np.float32)


def test_surveys_and_galaxies_page_by_page(sky):
    es = make_embedding_set(n=30, slug="pages", name="Pages survey")
    client = sky("viewer")
    surveys = client.surveys()
    assert isinstance(surveys, Table) and list(surveys["slug"]) == ["pages"]
    assert surveys["pixel_scale_arcsec"].unit == u.arcsec / u.pix and surveys["bands"][0] == "g,r,i"

    pages = list(client.iter_galaxies("pages", per=12, sort="-mag_r"))
    assert [len(p) for p in pages] == [12, 12, 6] and pages[0].meta["num_pages"] == 3
    everything = client.galaxies("pages", per=12)
    assert len(everything) == 30 and everything["ra"].unit == u.deg and everything["dec"].unit == u.deg
    assert sorted(everything["id"]) == sorted(galaxy_ids(es.surveys.get()))
    assert {"label", "mag_r", "source_id", "survey"} <= set(everything.colnames)    # metadata flattened
    assert "truth" not in everything.colnames
    bright = client.galaxies("pages", filters=["mag_r<15"], limit=3)
    assert len(bright) == 3 and (np.asarray(bright["mag_r"]) < 15).all()
    assert client.galaxy(int(everything["id"][0]))["survey"] == "pages"

    with pytest.raises(NotFound) as err:
        client.galaxies("nowhere")
    assert err.value.status == 404
    with pytest.raises(BadRequest, match="per must be at most 500"):
        client.galaxies("pages", per=501)


def test_neighbours_by_id_position_image_and_several_ids(sky):
    es = make_embedding_set(n=24, slug="near", name="Near survey")
    lm = make_latent_map(es)
    ids = galaxy_ids(es.surveys.get())
    client = sky("viewer")

    near = client.neighbours(ids[0], k=5, map_id=lm.pk)
    assert isinstance(near, Table) and len(near) == 5 and ids[0] not in list(near["id"])
    assert near.colnames[:6] == ["id", "source_id", "survey", "ra", "dec", "distance"]
    assert near["ra"].unit == u.deg and near["distance"].unit is None
    assert (np.diff(np.asarray(near["distance"])) >= -1e-9).all()           # nearest first
    assert {int(i) % 4 for i in np.asarray(near["id"]) - ids[0]} <= {0}    # clustered_vectors: same cluster
    assert np.isfinite(np.asarray(near["x"])).all() and near.meta["query"]["id"] == ids[0]

    at = client.neighbours_at(SkyCoord(150.05 * u.deg, 1.95 * u.deg), None, k=4)
    assert at.meta["match"]["id"] == ids[5] and len(at) == 4
    assert client.neighbours_at(150.05, 1.95, k=4).meta["match"]["id"] == ids[5]
    with pytest.raises(NotFound, match="no galaxy within 5″ of RA 10.00000°"):
        client.neighbours_at(10 * u.deg, -40 * u.deg, max_sep=5 * u.arcsec)

    more = client.similar(ids[:2], k=6)
    assert len(more) == 6 and not set(more["id"]) & set(ids[:2]) and more.meta["positives"] == ids[:2]

    task, encoded, images = embedded_by_a_real_encoder()
    buf = io.BytesIO()
    fits.PrimaryHDU(images[3]).writeto(buf)                    # galaxy 3's own pixels as a FITS cube
    by_image = client.neighbours_of_image(buf.getvalue(), k=3, filename="cut.fits",
                                          embedding_set=task.embedding_set_id)
    assert len(by_image) == 3 and by_image.meta["format"] == "FITS" and by_image["id"][0] == encoded[3]
    with pytest.raises(BadRequest) as err:
        client.neighbours_of_image(b"not an image", filename="x.png", embedding_set=task.embedding_set_id)
    assert err.value.message and err.value.message in str(err.value)

    cards = client.galaxy_cards(ids[:3])
    assert list(cards["id"]) == ids[:3]
    with pytest.raises(NotFound, match=r"galaxy 999999 .*"):
        client.neighbours(999999)


def test_map_coordinates_and_layers(sky):
    es = make_embedding_set(n=24, slug="mapped", name="Mapped survey")
    coords = np.random.default_rng(1).uniform(-5, 5, size=(24, 2)).astype(np.float32)
    lm = make_latent_map(es, coords)
    client = sky("viewer")
    assert list(client.maps()["id"]) == [lm.pk]
    layers = client.map_layers(lm.pk)
    assert "survey" in list(layers["key"])
    points = client.map_points(lm.pk, layer="survey", page=10)             # three pages of 10
    assert len(points) == 24 and points.meta["total"] == 24
    order = np.argsort(np.asarray(points["id"]))
    assert np.allclose(np.asarray(points["x"])[order], coords[:, 0], atol=1e-4)
    assert points["ra"].unit == u.deg and len(set(points["survey"])) == 1 and points.meta["layer"]["kind"] == "categorical"
    inside = client.map_points(lm.pk, bbox=(0, 0, 5, 5))
    assert len(inside) == int(((coords[:, 0] >= 0) & (coords[:, 1] >= 0)).sum())
    with pytest.raises(BadRequest, match="unknown colour layer"):
        client.map_points(lm.pk, layer="nope")


def test_anomaly_candidates_scores_and_verdicts(sky):
    score_set, ids = make_score_set()
    labeler, viewer = sky("labeler"), sky("viewer")
    scores = viewer.anomaly_scores(score_set.pk, page=25)
    assert len(scores) == 60 and list(scores["galaxy_id"]) == ids
    assert {"combined", "score_knn", "rank_knn", "score_lof"} <= set(scores.colnames)
    top = labeler.anomaly_candidates(score_set.pk, n=5, rank_by="combined")
    by_score = np.asarray(scores["galaxy_id"])[np.argsort(-np.asarray(scores["combined"]), kind="stable")]
    assert list(top["id"]) == list(by_score[:5])                             # most anomalous first
    assert top.meta["source"] == "combined"

    labeler.review(score_set.pk, int(top["id"][0]), 5)
    labeler.review(score_set.pk, int(top["id"][1]), artifact=True)
    mine = labeler.verdicts(score_set.pk)
    assert sorted(mine["kind"]) == ["artifact", "interesting"] and mine["ra"].unit == u.deg
    assert len(viewer.verdicts(score_set.pk)) == 0 and len(viewer.verdicts(score_set.pk, scope="all")) == 2
    assert labeler.galaxy_anomaly_scores(int(top["id"][0]))["verdict"]["interest"] == 5

    with pytest.raises(PermissionDenied, match="This action needs the labeler role."):
        viewer.review(score_set.pk, ids[0], 3)
    with pytest.raises(BadRequest, match="interest must be at most 5"):
        labeler.review(score_set.pk, ids[0], 7)


def test_labels_in_bulk_predictions_and_a_round_waited_on(sky, jobs_run_here):
    task = make_task(n=24, round_every=0)
    ids = galaxy_ids(task.surveys.get())
    curator, viewer = sky("curator"), sky("viewer")
    assert list(viewer.tasks()["name"]) == ["Morphology"]

    expert = Table({"galaxy_id": ids[:16], "class": [["elliptical", "spiral", "edge-on", "merger"][i % 4]
                                                     for i in range(16)]})
    posted = curator.post_labels(task.pk, expert)
    assert posted["stored"] == 16 and len(posted["label_ids"]) == 16
    assert Label.objects.filter(task=task, user__username="curator-client").count() == 16
    assert curator.post_labels(task.pk, [{"galaxy_id": ids[16], "class_index": 0}])["stored"] == 1
    assert curator.post_labels(task.pk, {"galaxy_id": ids[:2], "class_index": [1, 1]}, source="Expert A")["stored"] == 2
    assert Label.objects.filter(task=task, source="Expert A", user__username="source:expert-a").count() == 2

    with pytest.raises(PermissionDenied) as err:
        viewer.post_labels(task.pk, [{"galaxy_id": ids[17], "class_index": 1}])
    assert (err.value.status, err.value.message) == (403, "This action needs the labeler role.")
    with pytest.raises(PermissionDenied, match="this token is read-only"):
        sky("curator", read_only=True).post_labels(task.pk, [{"galaxy_id": ids[17], "class_index": 1}])
    with pytest.raises(BadRequest) as err:
        curator.post_labels(task.pk, [{"galaxy_id": ids[17], "class_index": 1}, {"galaxy_id": ids[18], "class": "blob"}])
    assert err.value.message.startswith("1 of 2 labels were refused and none was stored: row 1: unknown class 'blob'")
    assert [e["row"] for e in err.value.errors] == [1]
    assert Label.objects.filter(task=task).count() == 19

    history = viewer.labels(task.pk)
    assert len(history) == 19 and set(history["galaxy_id"]) == set(ids[:17])

    job = curator.start_round(task.pk)
    assert job.status == "queued" and jobs_run_here == [job.id]
    worker = threading.Thread(target=job_services.execute_job, args=(job.id, "test-worker"))
    worker.start()
    done = job.wait(poll=0.2, timeout=120)
    worker.join()
    assert done.status == "succeeded" and done["progress"] == 1.0
    rounds = viewer.rounds(task.pk)
    assert rounds["status"][0] == "ready" and 0 <= rounds["accuracy"][0] <= 1

    predictions = viewer.predictions(task.pk)
    assert len(predictions) == 24 and predictions["ra"].unit == u.deg
    predicted = [c for c in predictions.colnames if c.startswith("pred")]
    assert predicted and not np.ma.is_masked(predictions[predicted[0]][-1])
    with pytest.raises(NotFound):
        viewer.task(99999)


def test_a_failed_job_raises_with_its_error_and_bad_tokens_are_refused(sky, jobs_run_here, live_server):
    task = make_task(n=12)
    curator = sky("curator")
    with pytest.raises(Conflict) as err:            # no labels yet: the round service's 409
        curator.start_round(task.pk)
    assert err.value.status == 409 and "no labels yet" in err.value.message

    job = job_services.create_job("label_round", {"task_id": task.pk}, title="doomed")
    with pytest.raises(TimeoutError, match=f"job {job.pk} is still queued after 0.3 s"):
        curator.job(job.pk).wait(progress=False, poll=0.1, timeout=0.3)
    job_services.finish_job(job, "failed", error="the worker ran out of memory")
    with pytest.raises(JobFailed) as failed:
        curator.job(job.pk).wait(progress=False, poll=0.1, timeout=10)
    assert failed.value.job["status"] == "failed"
    assert str(failed.value) == f"job {job.pk} (doomed) failed: the worker ran out of memory"

    with pytest.raises(AuthenticationFailed) as err:
        Client(live_server.url, token="lsk_000000000000_wrong").surveys()
    assert err.value.status == 401 and err.value.message
