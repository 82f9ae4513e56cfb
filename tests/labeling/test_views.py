"""Labeling pages and JSON API: roles on every write endpoint, validation, exports, panels, layers."""
import importlib
import json

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.http import post_json
from tests.labeling.factories import make_task, true_class
from webapp.catalog.models import Galaxy
from webapp.jobs.services import execute_job
from webapp.labeling.models import Label, Round, Task
from webapp.labeling.services import labels, prerender, rounds

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]
ROLES = ("anonymous", "viewer", "labeler", "curator", "admin")


@pytest.fixture
def task():
    return make_task(n=24)


def first_galaxy(task):
    return Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index").first()


def trained(task, make_user, n=12):
    user = make_user("labeler", "trainer")
    for g in Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index")[:n]:
        labels.record_label(task, g.pk, user, "value", class_index=true_class(g))
    rnd = rounds.start_round(task, user)
    execute_job(rnd.job_id, worker="test")
    rnd.refresh_from_db()
    assert rnd.status == "ready"
    return rnd


# ---------------------------------------------------------------- roles on write endpoints
ALLOWED = {"labeler": {"labeler", "curator", "admin"}, "curator": {"curator", "admin"}}


@pytest.mark.parametrize("role", ROLES)
def test_label_and_undo_need_the_labeler_role(role_clients, task, role):
    c, g = role_clients[role], first_galaxy(task)
    r = post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": g.pk, "class_index": 2})
    expected = 201 if role in ALLOWED["labeler"] else (401 if role == "anonymous" else 403)
    assert r.status_code == expected
    assert Label.objects.filter(task=task).count() == (1 if expected == 201 else 0)
    r = post_json(c, f"/api/tasks/{task.pk}/undo", {})
    assert r.status_code == (200 if expected == 201 else expected)
    if expected == 201:
        assert r.json()["undone"]["class_index"] == 2
        assert Label.objects.filter(task=task, kind="undo").count() == 1


@pytest.mark.parametrize("role", ROLES)
def test_rounds_need_the_curator_role(role_clients, task, role, make_user):
    labels.record_label(task, first_galaxy(task).pk, make_user("labeler", "l2"), "value", class_index=0)
    r = post_json(role_clients[role], f"/api/tasks/{task.pk}/rounds")
    expected = 202 if role in ALLOWED["curator"] else (401 if role == "anonymous" else 403)
    assert r.status_code == expected
    assert Round.objects.filter(task=task).count() == (1 if expected == 202 else 0)
    page = role_clients[role].post(f"/tasks/{task.pk}/rounds")
    if expected == 202:    # the page form now finds round 1 still queued and says so
        assert page.status_code == 302 and Round.objects.filter(task=task).count() == 1
    else:
        assert page.status_code in (302, 403) and Round.objects.filter(task=task).count() == 0
        if role != "anonymous":
            assert page.status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_creating_and_editing_tasks_needs_the_curator_role(role_clients, task, role):
    c = role_clients[role]
    body = {"name": f"Bars by {role}", "kind": "classification", "classes_text": "barred, b1\nunbarred",
            "embedding_set": task.embedding_set_id, "surveys": [s.pk for s in task.surveys.all()],
            "strategy": "margin", "head_kind": "logistic", "mc_samples": 0, "batch_size": 10, "round_every": 10,
            "cold_start_labels": 10, "votes_per_galaxy": 1, "allow_unsure": "on"}
    r = c.post("/tasks/new/", body)
    ok = role in ALLOWED["curator"]
    if role == "anonymous":
        assert r.status_code == 302 and "/accounts/login" in r["Location"]
    else:
        assert r.status_code == (400 if ok else 403)   # key 'b1' is two characters: a form error
    body["classes_text"] = "barred, b\nunbarred"          # 'b' is reserved for the band view
    assert c.post("/tasks/new/", body).status_code == (400 if ok else (302 if role == "anonymous" else 403))
    body["classes_text"] = "barred, 7\nunbarred"
    r = c.post("/tasks/new/", body)
    created = Task.objects.filter(name=f"Bars by {role}").first()
    assert (created is not None) == ok
    if ok:
        assert r.status_code == 302
        assert created.classes == [{"name": "barred", "key": "7"}, {"name": "unbarred", "key": "2"}]
        assert created.head_config["kind"] == "logistic"
        edit = c.post(f"/tasks/{created.pk}/edit/", {**body, "strategy": "entropy", "name": created.name})
        assert edit.status_code == 302 and Task.objects.get(pk=created.pk).strategy == "entropy"
    else:
        assert c.post(f"/tasks/{task.pk}/edit/", {**body, "name": "hijack"}).status_code in (302, 403)
        assert Task.objects.get(pk=task.pk).name == "Morphology"


def test_task_form_explains_what_is_wrong(curator_client, task):
    base = {"name": "X", "kind": "classification", "classes_text": "only one", "embedding_set": task.embedding_set_id,
            "surveys": [s.pk for s in task.surveys.all()], "strategy": "bald", "head_kind": "logistic",
            "batch_size": 10, "round_every": 10, "cold_start_labels": 10, "votes_per_galaxy": 1}
    errors = curator_client.post("/tasks/new/", base).context["form"].errors
    assert "at least two classes" in str(errors["classes_text"])
    assert "BALD needs the MLP ensemble" in str(errors["strategy"])
    reg = {**base, "kind": "regression", "classes_text": "", "strategy": "margin", "value_min": 5, "value_max": 1}
    errors = curator_client.post("/tasks/new/", reg).context["form"].errors
    assert "name the quantity" in str(errors["target_name"]) and "larger than the minimum" in str(errors["value_max"])


# ---------------------------------------------------------------- label validation
@pytest.mark.parametrize("body,needle", [
    ({"class_index": 9}, "out of range"), ({"class_index": "x"}, "must be an integer"),
    ({"kind": "maybe", "class_index": 1}, "kind must be"), ({"galaxy_id": 10**9, "class_index": 1}, "no galaxy"),
])
def test_bad_labels_are_refused_clearly(role_clients, task, body, needle):
    payload = {"galaxy_id": first_galaxy(task).pk, **body}
    r = post_json(role_clients["labeler"], f"/api/tasks/{task.pk}/labels", payload)
    assert r.status_code == 400 and needle in r.json()["error"]
    assert not Label.objects.exists()


def test_regression_values_must_be_finite_and_in_range(role_clients):
    task = make_task(n=6, name="Radius", kind="regression", classes=[], target_name="radius", unit="arcsec",
                     value_min=0, value_max=30, allow_unsure=False)
    g, c = first_galaxy(task), role_clients["labeler"]
    for value, needle in [(31, "above the task's maximum 30 arcsec"), ("nan", "finite"), (None, "must be a number")]:
        r = post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": g.pk, "value": value})
        assert r.status_code == 400 and needle in r.json()["error"]
    r = post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": g.pk, "kind": "unsure"})
    assert r.status_code == 400 and "no 'unsure'" in r.json()["error"]
    assert post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": g.pk, "value": 12.5}).status_code == 201


def test_undo_with_nothing_to_undo_is_a_conflict(role_clients, task):
    r = post_json(role_clients["labeler"], f"/api/tasks/{task.pk}/undo")
    assert r.status_code == 409 and r.json()["error"] == "nothing to undo"


# ---------------------------------------------------------------- pages
def test_pages_render_for_viewers_and_the_label_page_needs_labelers(role_clients, task, make_user):
    v = role_clients["viewer"]
    assert "Morphology" in v.get("/tasks/").content.decode()
    page = v.get(f"/tasks/{task.pk}/").content.decode()
    assert "No model yet" in page and 'id="train-now"' not in page
    assert v.get(f"/tasks/{task.pk}/label/").status_code == 403
    assert v.get("/tasks/new/").status_code == 403
    label_page = role_clients["labeler"].get(f"/tasks/{task.pk}/label/")
    boot = label_page.context["boot"]
    assert boot["keys"] == {"1": 0, "2": 1, "3": 2, "4": 3}
    assert "<kbd>1</kbd> elliptical" in label_page.content.decode()
    rnd = trained(task, make_user)
    page = role_clients["curator"].get(f"/tasks/{task.pk}/").content.decode()
    assert rnd.model_version in page and 'id="train-now"' in page
    assert page.count("data-bokeh-item=") == 3   # learning curve, confusion matrix, reliability diagram


def test_task_list_query_count_does_not_grow_with_tasks(role_clients, task):
    c = role_clients["viewer"]
    c.get("/tasks/")
    with CaptureQueriesContext(connection) as one:
        c.get("/tasks/")
    for i in range(3):
        make_task(n=4, name=f"Extra {i}", embedding_set=task.embedding_set, surveys=list(task.surveys.all()))
    with CaptureQueriesContext(connection) as four:
        c.get("/tasks/")
    assert len(four) == len(one)


def test_queue_api_explains_each_pick_and_serves_image_urls(role_clients, task):
    r = role_clients["labeler"].get(f"/api/tasks/{task.pk}/queue?n=3")
    items = r.json()["items"]
    assert len(items) == 3
    item = items[0]
    assert item["source"] == "cold_start" and "nearest to centroid" in item["reason"]
    stage = prerender.stage_px(task.surveys.get())          # 2x the cutout, 128-512 px
    assert item["image_url"].startswith(f"/thumbs/{item['galaxy_id']}/composite-{stage}-")  # content-addressed
    assert [b["name"] for b in item["bands"]] == ["g", "r", "i"]
    assert role_clients["labeler"].get(f"/api/tasks/{task.pk}/queue?n=x").status_code == 400
    assert role_clients["viewer"].get(f"/api/tasks/{task.pk}/queue").status_code == 403


def test_exports_download_in_each_format(role_clients, task, make_user):
    trained(task, make_user)
    c = role_clients["viewer"]
    for fmt, ctype, head in [("csv", "text/csv", b"galaxy_id,survey"), ("fits", "application/fits", b"SIMPLE"),
                             ("votable", "application/x-votable+xml", b"<?xml")]:
        r = c.get(f"/tasks/{task.pk}/export?format={fmt}&table=catalogue")
        assert r.status_code == 200 and r["Content-Type"].startswith(ctype) and r.content.startswith(head)
        assert "attachment" in r["Content-Disposition"]
    assert c.get(f"/tasks/{task.pk}/export?format=xls").status_code == 400
    data = c.get(f"/api/tasks/{task.pk}/catalogue?per=10&page=2").json()
    assert (data["count"], data["page"], data["num_pages"], len(data["results"])) == (24, 2, 3, 10)
    assert {"ra", "dec", "consensus", "frac_spiral", "pred_class", "p_spiral", "pred_entropy", "model_version",
            "round"} <= set(data["columns"])
    assert c.get(f"/api/tasks/{task.pk}/catalogue?page=9").status_code == 404
    hist = c.get(f"/api/tasks/{task.pk}/labels/history").json()
    assert hist["count"] == 12 and hist["results"][0]["user"] == "trainer"


def test_galaxy_page_shows_the_prediction_panel(role_clients, task, make_user):
    trained(task, make_user)
    g = Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index")[20]
    page = role_clients["viewer"].get(f"/galaxies/{g.pk}/").content.decode()
    assert 'id="labeling-panel"' in page and "Morphology" in page
    assert f'<b class="pred-class">{["elliptical", "spiral", "edge-on", "merger"][true_class(g)]}</b>' in page


def test_colour_layers_align_with_the_embedding_rows(task, make_user):
    from webapp.embeddings.services.colours import colour_providers, resolve_values
    from webapp.embeddings.services.vectors import load_embedding_set
    trained(task, make_user)
    layers = [layer for p in colour_providers() for layer in p(task.embedding_set)]
    by_key = {layer.key: layer for layer in layers}
    pred, unc = by_key[f"prediction:{task.pk}"], by_key[f"uncertainty:{task.pk}"]
    ids, _, _ = load_embedding_set(task.embedding_set)
    classes = {g.pk: true_class(g) for g in Galaxy.objects.all()}
    names = ["elliptical", "spiral", "edge-on", "merger"]
    values, uncertainty = resolve_values(pred), resolve_values(unc)
    assert pred.kind == "categorical" and len(values) == len(ids) and pred.group == "Predictions"
    assert sum(values[i] == names[classes[int(g)]] for i, g in enumerate(ids)) >= len(ids) - 1
    assert unc.kind == "numeric" and np.isfinite(uncertainty).all() and (uncertainty >= 0).all()


@pytest.mark.parametrize("broken", ["webapp.labeling.services.labels.refresh_queue_item",
                                    "webapp.labeling.services.stats.round_progress",
                                    "webapp.labeling.services.rounds.maybe_start_auto_round"])
def test_a_label_committed_before_the_database_drops_is_reported_stored(role_clients, task, monkeypatch, broken):
    """The outage hits after the INSERT committed: the reply must be 201, not "not stored, retry"
    (a retry would add the label twice)."""
    from django.db import OperationalError

    def outage(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")
    module, name = broken.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, outage)
    g = first_galaxy(task)
    r = post_json(role_clients["labeler"], f"/api/tasks/{task.pk}/labels", {"galaxy_id": g.pk, "class_index": 1})
    assert r.status_code == 201, r.content
    assert Label.objects.filter(task=task, galaxy=g, kind="value").count() == 1
    assert r.json()["label_id"] == Label.objects.get(task=task, galaxy=g).pk


def test_task_page_shows_each_metric_with_its_interval_and_n_and_old_rounds_still_render(
        role_clients, task, make_user):
    rnd = trained(task, make_user)
    m = rnd.metrics
    lo, hi = m["intervals"]["accuracy"]
    resp = role_clients["viewer"].get(f"/tasks/{task.pk}/")
    page = resp.content.decode()
    ci = f"{lo * 100:.1f}–{hi * 100:.1f}%"
    assert f"95% interval {ci} · CV over 12" in page                    # serving block: value, interval, n
    assert page.count(ci) == 2                                          # ... and the rounds table
    assert "12 labels (fewer than 200)" in page                         # the validation text says it is CV
    cal = m["calibration"]
    assert f"ECE before calibration <b>{cal['ece_before']:.3f}</b> → after <b>{cal['ece_after']:.3f}</b>" in page
    assert "on 12 galaxies neither the model nor the calibration was fitted on" in page
    curve = json.dumps(resp.context["learning_curve"])
    assert "accuracy_low" in curve and "VArea" in curve                 # the interval drawn as a band
    # a round stored before intervals and calibration existed: same page, no interval, no crash
    Round.objects.filter(pk=rnd.pk).update(metrics={k: v for k, v in m.items()
                                                    if k not in ("intervals", "calibration", "evaluation",
                                                                 "ece_before_calibration", "interval_level")})
    page = role_clients["viewer"].get(f"/tasks/{task.pk}/").content.decode()
    assert rnd.model_version in page and "metric-ci" not in page and ci not in page
    assert f"{m['accuracy'] * 100:.1f}%" in page and "n = 12" in page


def test_an_undo_committed_before_the_database_drops_is_reported_undone_and_retracts_once(role_clients, task):
    """The outage hits right after the UNDO row committed: nothing may read the database again.
    The reply must be 200 with the retracted answer (a 503 would make the client retry and
    retract the answer before it too)."""
    from django.db import OperationalError

    c = role_clients["labeler"]
    first, second = Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index")[:2]
    kept = post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": first.pk, "class_index": 0}).json()["label_id"]
    undone = post_json(c, f"/api/tasks/{task.pk}/labels", {"galaxy_id": second.pk, "class_index": 2}).json()["label_id"]
    state = {"undo_committed": False}

    def database_drops_after_the_undo_insert(execute, sql, params, many, context):
        if state["undo_committed"]:
            raise OperationalError("server closed the connection unexpectedly")
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("INSERT") and Label._meta.db_table in sql:
            state["undo_committed"] = True
        return result
    with connection.execute_wrapper(database_drops_after_the_undo_insert):
        r = post_json(c, f"/api/tasks/{task.pk}/undo", {})
    assert state["undo_committed"]
    assert r.status_code == 200, r.content
    assert r.json()["undone"] == {"label_id": undone, "galaxy_id": second.pk, "kind": "value",
                                  "class_index": 2, "value": None}
    assert r.json()["progress"] is None  # counters are best effort and were left out
    assert list(Label.objects.filter(task=task, kind="undo").values_list("undoes_id", flat=True)) == [undone]
    assert [a.label_id for a in labels.task_answers(task).values()] == [kept]
