"""Sentinel: the simulator's hidden truth never reaches a page, an API reply or an export.

Every galaxy's Galaxy.truth holds a unique string.  An admin (also a Django superuser, so the
admin site is walked too) then requests every URL pattern of the site with the ids of a
world that has everything a page can show: a survey with catalogue columns, a ready encoder
with a checkpoint and an evaluation report, an embedding set, a map and its colour layers,
anomaly scores and reviews, a labeling task with labels, a trained round and predictions, a
collection and jobs.  Exports (CSV, FITS, VOTable), map layers, points, density and mosaics
are requested in each of their formats, and the API's write endpoints that answer with
galaxy data are posted to.  The sentinel must appear in no body and no header.

So that the walk cannot pass by covering nothing, it must have answered at least MIN_OK URLs
with 200, and every path of the served OpenAPI document must have been requested (GET paths
with a 200 answer).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.contrib import admin
from django.urls import get_resolver

from ml.anomaly import AnomalyConfig
from tests.anomalies.factories import FAST
from tests.embeddings.map_factories import make_latent_map
from tests.labeling.factories import make_encoder_task, true_class
from webapp.accounts.tokens import create_token
from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services import reviews
from webapp.anomalies.services.scoring import score_embedding_set
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import Collection
from webapp.interop import links
from webapp.jobs.models import Job
from webapp.jobs.services import create_job, execute_job
from webapp.labeling.services import labels, rounds

pytestmark = [pytest.mark.unit, pytest.mark.slow, pytest.mark.django_db]

SENTINEL = "TRUTH-SENTINEL-5c1e0b7d"
MIN_OK = 80  # URLs answered 200 by the walk (150 today); fewer means the walk broke


@pytest.fixture
def world(make_user):
    """Every kind of object a page can show, over galaxies whose truth is the sentinel."""
    admin_user = make_user("admin", "truth-admin")
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    task, ids = make_encoder_task(n=32, name="Sentinel task", slug="sentinel")
    Galaxy.objects.update(truth={"class": SENTINEL, "note": SENTINEL})
    survey = task.surveys.get()
    for g in Galaxy.objects.filter(pk__in=ids):   # catalogue columns like a simulated survey's
        g.metadata = {"mag_r": 18.0 + g.image_index / 10, "gz_label": ["elliptical", "spiral"][g.image_index % 2],
                      "gz_vote_spiral": 0.5}
        g.save(update_fields=["metadata"])
    from webapp.catalog.services.galaxy_rows import fill_sky_columns
    fill_sky_columns()   # HEALPix cells and magnitudes, so the cone search finds these galaxies
    es = task.embedding_set
    encoder = es.encoder
    encoder.metrics = {"evaluation": {survey.slug: {
        "survey": survey.slug, "label": "metadata:gz_label", "n_labelled": 32, "classes": ["elliptical", "spiral"],
        "class_counts": {"elliptical": 16, "spiral": 16}, "n_sampled": 32, "seconds": 1.0,
        "results": {"ssl": {"knn": {"balanced_accuracy": 0.9, "per_class": {}},
                            "linear": {"balanced_accuracy": 0.8, "per_class": {}}}},
        "rows": [{"representation": "ssl", "knn_bal_acc": 0.9, "linear_bal_acc": 0.8}]}}}
    encoder.save(update_fields=["metrics"])
    latent_map = make_latent_map(es)
    score_set = ScoreSet.objects.create(embedding_set=es)
    score_embedding_set(score_set, AnomalyConfig(methods=("iforest", "knn"), **FAST))
    score_set.refresh_from_db()
    for gid in ids[:3]:
        reviews.record_verdict(admin_user, score_set, gid, 4, False)
    reviews.record_verdict(admin_user, score_set, ids[3], None, True)
    for g in Galaxy.objects.filter(pk__in=ids).order_by("image_index")[:16]:
        labels.record_label(task, g.pk, admin_user, "value", class_index=true_class(g))
    execute_job(rounds.start_round(task, admin_user).job_id, worker="test")
    collection = Collection.objects.create(name="Sentinel picks", owner=admin_user)
    collection.galaxies.add(*ids[:5])
    job = create_job("evaluate_encoder", {"encoder_id": encoder.pk}, user=admin_user, dispatch=False)
    token, _ = create_token(admin_user, "sentinel notebook")
    assert Galaxy.objects.exclude(truth__class=SENTINEL).count() == 0
    return dict(admin=admin_user, task=task, ids=ids, survey=survey, es=es, encoder=encoder,
                map=latent_map, score_set=score_set, collection=collection, job=job, token=token)


class Walk:
    """A logged-in client that records every request and fails on the sentinel."""

    def __init__(self, client):
        self.client, self.seen = client, []   # seen: (method, path, status)

    def request(self, method: str, url: str, **kw):
        response = getattr(self.client, method)(url, **kw)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        headers = "\n".join(f"{k}: {v}" for k, v in response.items()).encode()
        assert SENTINEL.encode() not in body + headers, f"{method.upper()} {url} shows the truth"
        self.seen.append((method, url.split("?")[0], response.status_code))
        return response, body

    def get(self, url):
        return self.request("get", url)

    def post(self, url, data):
        return self.request("post", url, data=json.dumps(data), content_type="application/json")


def site_routes(resolver=None, prefix=""):
    """Every URL pattern of the site (the admin is walked through its registry instead)."""
    for pattern in (resolver or get_resolver()).url_patterns:
        route = prefix + str(pattern.pattern)
        if hasattr(pattern, "url_patterns"):
            if not route.startswith("admin/"):
                yield from site_routes(pattern, route)
        else:
            yield route


def _thumb_key(w: dict) -> str:
    from webapp.catalog.models import Galaxy
    from webapp.catalog.services import static_thumbs
    galaxy = Galaxy.objects.select_related("survey").get(pk=w["ids"][0])
    return static_thumbs.content_key(galaxy.survey, galaxy, 96) or "composite-96-0000000000000000"


def _atlas_url(w: dict) -> str:
    from webapp.catalog.services import atlas
    return atlas.layout_for_ids(list(w["ids"][:5]), 96).url


def fill(route: str, w: dict) -> str:
    values = {"galaxy_id": w["ids"][0], "slug": w["survey"].slug, "job_id": w["job"].pk,
              "encoder_id": w["encoder"].pk, "map_id": w["map"].pk, "collection_id": w["collection"].pk,
              "score_set_id": w["score_set"].pk, "task_id": w["task"].pk, "token_id": w["token"].pk,
              "set_id": w["es"].pk,
              # a signed SAMP link (served without login to TOPCAT/Aladin) to the collection's table
              "token": links.sign({"k": "collection", "id": w["collection"].pk}), "filename": "sentinel.vot",
              # a map tile (the sentinel's map is small: no tiles, a 404 that must not show the truth either)
              "version": (w["map"].params or {}).get("tiles", {}).get("version", "none"), "kind": "points",
              "z": 0, "x": 0, "y": 0,
              # the content-addressed thumbnail of the first galaxy, and the atlas of the first five
              "key": _thumb_key(w), "digest": _atlas_url(w).split("/")[-1].split(".jpg")[0]}

    def value(match):
        name = match.group(1).split(":")[-1]
        assert name in values, f"the sentinel walk does not know how to fill <{match.group(1)}> in {route}"
        return str(values[name])
    return "/" + re.sub(r"<([^>]+)>", value, route)


def variants(w: dict) -> list[str]:
    """The query strings that make pages show more: exports in every format, layers, searches."""
    t, m, s, g = w["task"].pk, w["map"].pk, w["score_set"].pk, w["ids"]
    urls = [f"/tasks/{t}/export?format={fmt}&table={table}"
            for fmt in ("csv", "fits", "votable") for table in ("catalogue", "labels")]
    urls += [f"/anomalies/{s}/export.csv?scope=all", f"/anomalies/{s}/export.vot?scope=all",
             f"/anomalies/{s}/export.csv", f"/anomalies/{s}/export.vot",
             f"/collections/{w['collection'].pk}/export.csv",
             f"/api/maps/{m}/points?fields=row,id,x,y", f"/api/maps/{m}/points?format=bin",
             f"/api/maps/{m}/density?format=json&bins=16", f"/api/maps/{m}/density?format=json&bins=8&space=sky",
             f"/api/maps/{m}/mosaic?format=json&bbox=-10,-10,10,10&cells=4",
             f"/api/maps/{m}/mosaic?bbox=-10,-10,10,10&cells=4&tile=16",
             f"/api/search/neighbours/{g[0]}?k=5&map={m}", f"/api/search/similar?ids={g[0]},{g[1]}&k=5",
             f"/api/search/galaxies?ids={','.join(map(str, g[:5]))}",
             f"/api/search/sky?ra={150.0}&dec={2.0}&max_sep=3600&k=5",
             f"/api/surveys/{w['survey'].slug}/galaxies/?f=gz_label:spiral&sort=-mag_r",
             f"/api/surveys/{w['survey'].slug}/cone?ra=150&dec=2&radius=2",
             f"/surveys/{w['survey'].slug}/?ra=150&dec=2&radius=2",
             f"/api/anomalies/score-sets/{s}/queue/?n=10", f"/api/anomalies/score-sets/{s}/reviews/?scope=all",
             f"/api/tasks/{t}/queue?n=5", f"/api/jobs/?ids={w['job'].pk}", f"/api/jobs/?active=1",
             f"/search/?galaxy={g[0]}&k=5", f"/search/?ids={g[0]},{g[1]}&k=5",
             f"/surveys/{w['survey'].slug}/?sort=mag_r&f=gz_label:spiral", f"/maps/{m}/?collection={w['collection'].pk}",
             _atlas_url(w), f"/thumbs/{g[0]}/{_thumb_key(w)}.png",
             f"/api/thumbs/atlas?size=72&ids={','.join(map(str, g[:5]))}"]
    return urls


def test_truth_never_appears_in_any_page_api_reply_or_export(client, world):
    client.force_login(world["admin"])
    walk = Walk(client)
    for route in site_routes():
        walk.get(fill(route, world))
    for url in variants(world):
        response, _ = walk.get(url)
        assert response.status_code == 200, url
    m = world["map"].pk
    _, body = walk.get(f"/api/maps/{m}/layers")
    layer_keys = [layer["key"] for layer in json.loads(body)["layers"]]
    assert len(layer_keys) >= 3 and any(k.startswith("meta:") for k in layer_keys)
    for key in layer_keys:   # every colour layer, as legend and as per-point values
        assert walk.get(f"/api/maps/{m}/layers?key={key}")[0].status_code == 200, key
        assert walk.get(f"/api/maps/{m}/points?format=bin&fields=c&layer={key}")[0].status_code == 200, key
    # the same map as tiles (what maps above MAP_TILE_THRESHOLD serve): every snapshotted layer
    from ml.tiles import TileConfig
    from webapp.embeddings.services import map_tiles
    info = map_tiles.build_map_tiles(world["map"], TileConfig(tile_size=16, density_levels=1, points_per_tile=20))
    tile = f"/api/maps/{m}/tiles/{info['version']}"
    assert walk.get(f"{tile}/points/0/0/0?format=json")[0].status_code == 200
    for key in [k["key"] for k in map_tiles.reader(world["map"]).manifest["layers"]]:
        assert walk.get(f"{tile}/points/0/0/0?layer={key}")[0].status_code == 200, key
        assert walk.get(f"{tile}/density/0/0/0?format=json&layer={key}")[0].status_code == 200, key
    # the admin site: every registered model's list, add form and the first object's page
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        walk.get(base)
        first = model.objects.order_by("pk").first()
        if first is not None:
            walk.get(f"{base}{first.pk}/change/")
    walk.get("/admin/")
    # write endpoints that answer with galaxy data
    t, s, ids = world["task"].pk, world["score_set"].pk, world["ids"]
    assert walk.post(f"/api/tasks/{t}/labels", {"galaxy_id": ids[20], "kind": "value", "class_index": 1}
                     )[0].status_code in (200, 201)
    assert walk.post(f"/api/anomalies/score-sets/{s}/reviews/", {"galaxy_id": ids[10], "interest": 5}
                     )[0].status_code == 201
    assert walk.post(f"/api/collections/{world['collection'].pk}/add", {"galaxy_ids": ids[6:9]}
                     )[0].status_code in (200, 201)
    # what the page sends over SAMP: every kind of signed table or cutout, fetched as TOPCAT would
    for kind in ({"kind": "ids", "galaxy_ids": ids[:5]}, {"kind": "collection", "id": world["collection"].pk},
                 {"kind": "anomalies", "id": s, "query": "scope=all"}, {"kind": "task", "id": t},
                 {"kind": "cutout", "id": ids[0]}):
        response, body = walk.post("/samp/link", kind)
        assert response.status_code == 200, (kind, body)
        assert walk.get(json.loads(body)["url"].replace("http://testserver", ""))[0].status_code == 200, kind
    for path in ("/api/tasks/{t}/undo", "/api/anomalies/score-sets/{s}/undo/", "/api/tasks/{t}/enqueue",
                 "/api/tasks/{t}/rounds", "/api/anomalies/score-sets/{s}/ranking/"):
        walk.post(path.format(t=t, s=s), {"galaxy_ids": ids[:2]})

    ok = [(method, path) for method, path, status in walk.seen if status == 200]
    assert len(ok) >= MIN_OK, f"only {len(ok)} URLs answered 200; the walk covers too little"
    schema = json.loads(walk.get("/api/openapi.json")[1])
    missing = []
    for path, methods in schema["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        if "get" in methods:
            hit = any(method == "get" and pattern.match(url) for method, url in ok)
        else:
            hit = any(pattern.match(url) for _, url, _ in walk.seen)
        if not hit:
            missing.append(path)
    assert missing == []
    assert Job.objects.exists() and Galaxy.objects.filter(truth__note=SENTINEL).count() == len(ids)
