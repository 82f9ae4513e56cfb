"""Rounds: train on labels, predict every galaxy with uncertainty, metrics, failure keeps the old model."""
import numpy as np
import pytest

from tests.catalog.factories import make_survey
from tests.labeling.factories import make_embedding_set, make_task, true_class
from webapp.catalog.models import Galaxy
from webapp.embeddings.models import ArtifactStatus
from webapp.jobs.models import Job
from webapp.jobs.services import execute_job
from webapp.labeling.models import QueueItem, Round
from webapp.labeling.services import labels, queue, rounds, store

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def label_galaxies(task, user, n, survey=None, start=0):
    galaxies = Galaxy.objects.filter(survey=survey or task.surveys.first()).order_by("image_index")[start:start + n]
    for g in galaxies:
        labels.record_label(task, g.pk, user, "value", class_index=true_class(g))
    return list(galaxies)


def served(task, survey=None) -> dict[int, dict]:
    """{galaxy id: prediction} of the serving round, read from its columnar files (galaxies
    with a prediction only; optionally those of one survey)."""
    rnd = store.serving_round(task)
    gids = store.task_rows(task).galaxy_ids
    if survey is not None:
        gids = np.array(sorted(set(gids.tolist()) & set(survey.galaxies.values_list("pk", flat=True))))
    preds = store.predictions_for(rnd, gids)
    out = {}
    for i, g in enumerate(gids.tolist()):
        if not np.isfinite(preds["uncertainty"][i]):
            continue
        item = {"round_id": rnd.pk, "uncertainty": float(preds["uncertainty"][i])}
        if "probs" in preds:
            item.update(probabilities=preds["probs"][i].tolist(), class_index=int(np.argmax(preds["probs"][i])))
        else:
            item.update(value=float(preds["mean"][i]))
        out[g] = item
    return out


def run(rnd) -> Job:
    """Run the round's job in this process, like a worker would (claim, handler, outcome)."""
    execute_job(rnd.job_id, worker="test")
    return Job.objects.get(pk=rnd.job_id)


def test_round_trains_predicts_every_galaxy_and_refills_the_queue(make_user):
    task = make_task(n=40)
    user = make_user("labeler")
    label_galaxies(task, user, 16)
    rnd = rounds.start_round(task, user)
    job = run(rnd)
    assert job.status == "succeeded", job.error
    rnd.refresh_from_db()
    assert (rnd.status, rnd.n_labels, rnd.number) == ("ready", 16, 1)
    assert rnd.model_version.startswith(f"{task.pk}.1-logistic-")
    assert rnd.metrics["accuracy"] >= 0.9 and rnd.metrics["evaluation"] == "cv"
    assert set(rnd.metrics) >= {"accuracy", "balanced_accuracy", "macro_f1", "ece", "confusion", "reliability"}
    preds = served(task)
    assert len(preds) == 40
    right = sum(preds[g.pk]["class_index"] == true_class(g) for g in Galaxy.objects.all())
    assert right >= 38
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-2 and p["uncertainty"] >= 0 for p in preds.values())
    # no per-galaxy rows: the round points at a directory of columns on the set's rows
    columns = store.load_predictions(rnd)
    assert columns["probs"].shape == (task.embedding_set.n, len(task.classes)) and isinstance(columns["probs"], np.memmap)
    # the queue now holds margin picks of this round's model, with the reason shown to people
    picks = QueueItem.objects.filter(task=task, done=False, source="strategy")
    assert picks.count() == task.batch_size
    assert all(q.reason.startswith("margin ") and "round 1 model" in q.reason for q in picks)
    # ... and the images the labeling page preloads for them are files already (issue 16)
    from webapp.catalog.services import render
    from webapp.labeling.services import prerender
    survey = task.surveys.get()
    indexes = dict(Galaxy.objects.filter(pk__in=[q.galaxy_id for q in picks]).values_list("pk", "image_index"))
    assert all(render.thumb_path(survey, indexes[q.galaxy_id], render.variant_name(band, size)).exists()
               for q in picks for band, size in prerender.page_variants(survey))


def test_failed_retrain_leaves_the_previous_model_serving(make_user, monkeypatch):
    task = make_task(n=40)
    user = make_user("labeler")
    label_galaxies(task, user, 12)
    first = rounds.start_round(task, user)
    assert run(first).status == "succeeded"
    before = {g: (p["round_id"], p["class_index"]) for g, p in served(task).items()}
    label_galaxies(task, user, 8, start=12)

    def broken(*args, **kwargs):
        raise FloatingPointError("optimizer diverged")
    monkeypatch.setattr("webapp.labeling.services.training.fit_classifier", broken)
    second = rounds.start_round(task, user)
    job = run(second)
    second.refresh_from_db()
    assert job.status == "failed" and "optimizer diverged" in job.message
    assert second.status == ArtifactStatus.FAILED and "optimizer diverged" in second.error
    assert store.serving_round(task).pk == first.pk
    assert {g: (p["round_id"], p["class_index"]) for g, p in served(task).items()} == before


def test_round_refuses_without_labels_or_while_one_runs(make_user):
    task = make_task(n=12)
    with pytest.raises(rounds.RoundError, match="no labels yet"):
        rounds.start_round(task)
    label_galaxies(task, make_user("labeler"), 4)
    rounds.start_round(task)
    with pytest.raises(rounds.RoundError, match="still training"):
        rounds.start_round(task)


def test_every_n_labels_starts_exactly_one_automatic_round(make_user):
    """As the label view does: after each value label, ask for an automatic round."""
    task = make_task(n=40, round_every=5)
    user = make_user("labeler")
    started = []
    for g in Galaxy.objects.filter(survey=task.surveys.first()).order_by("image_index")[:7]:
        labels.record_label(task, g.pk, user, "value", class_index=true_class(g))
        started.append(rounds.maybe_start_auto_round(task) is not None)
    assert started == [False] * 4 + [True, False, False]   # the 5th label triggers; 6th and 7th find it running
    assert list(Round.objects.filter(task=task).values_list("number", "trigger")) == [(1, "auto")]


def test_regression_round_gives_mean_sigma_rmse_and_coverage(make_user):
    task = make_task(n=60, name="Size", kind="regression", classes=[], target_name="radius", unit="arcsec",
                     value_min=0, value_max=100, head_config={"kind": "linear"})
    user = make_user("labeler")
    rows = store.task_rows(task)
    x = rows.vectors()
    truth = {int(g): float(10 + 3 * x[i, 0]) for i, g in enumerate(rows.galaxy_ids)}
    for g in list(truth)[:30]:
        labels.record_label(task, g, user, "value", value=truth[g])
    rnd = rounds.start_round(task, user)
    assert run(rnd).status == "succeeded"
    rnd.refresh_from_db()
    assert rnd.metrics["rmse"] < 0.5 and 0 <= rnd.metrics["coverage_90"] <= 1
    g = list(truth)[30]
    p = served(task)[g]
    assert abs(p["value"] - truth[g]) < 1.0 and p["uncertainty"] > 0
    picks = QueueItem.objects.filter(task=task, source="strategy")
    assert all(q.reason.startswith("predictive sigma") for q in picks)


def test_model_trained_on_survey_a_predicts_b_and_adapts_with_b_labels(make_user, client):
    a = make_survey(name="A", slug="sa", n=60)
    b = make_survey(name="B", slug="sb", n=60, seed=1)
    es = make_embedding_set([a, b], shifts=[0.0, 1.5])          # survey B is offset in embedding space
    task = make_task(name="AB", surveys=[a, b], embedding_set=es, source_survey=a)
    user = make_user("labeler")
    label_galaxies(task, user, 30, survey=a)
    assert run(rounds.start_round(task, user)).status == "succeeded"
    on_b = len(served(task, survey=b))
    assert on_b == 60                                          # B is predicted at once
    label_galaxies(task, user, 12, survey=b)
    rnd = rounds.start_round(task, user)
    assert run(rnd).status == "succeeded", Job.objects.get(pk=rnd.job_id).error
    rnd.refresh_from_db()
    t = rnd.transfer["sb"]
    assert t["source"] == "sa" and t["n_target_labels"] == 12
    assert t["after"]["accuracy"] >= t["before"]["accuracy"] and t["after"]["accuracy"] >= 0.9
    preds = {g: p["class_index"] for g, p in served(task, survey=b).items()}
    acc = np.mean([preds[g.pk] == true_class(g) for g in Galaxy.objects.filter(survey=b)])
    assert acc >= 0.9
    # the task page reports A -> B accuracy before and after adaptation
    client.force_login(user)
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    section = page[page.index('id="transfer"'):]
    assert "sa → sb" in section
    for when in ("before", "after"):
        assert f"{100 * t[when]['accuracy']:.1f}%" in section
        lo, hi = t[when]["intervals"]["accuracy"]                 # 12 target labels: a wide interval, shown
        assert hi - lo > 0.2 and f"{lo * 100:.1f}–{hi * 100:.1f}%" in section


def test_old_rounds_lose_their_files_but_the_serving_one_stays(make_user, settings):
    """Retention (settings.KEEP_ROUNDS): run at the end of each round job."""
    from pathlib import Path

    settings.KEEP_ROUNDS = 2
    task = make_task(n=40)
    user = make_user("labeler")
    made = []
    for i in range(3):
        label_galaxies(task, user, 4, start=4 * i)
        rnd = rounds.start_round(task, user)
        assert run(rnd).status == "succeeded"
        rnd.refresh_from_db()
        made.append((rnd, Path(settings.DATA_DIR) / rnd.predictions_path))
    for rnd, _ in made:
        rnd.refresh_from_db()
    (r1, d1), (r2, d2), (r3, d3) = made
    assert r1.predictions_path == "" and r1.model_path == "" and not d1.parent.exists()
    assert r1.status == "ready" and r1.metrics                      # the learning curve keeps its point
    assert d2.is_dir() and d3.is_dir() and store.serving_round(task).pk == r3.pk
    assert len(served(task)) == 40
    assert rounds.prune_rounds(task, keep=1) == [2] and not d2.parent.exists() and d3.is_dir()
    # a galaxy page still renders and shows the serving prediction
    g = Galaxy.objects.filter(survey=task.surveys.first()).first()
    from django.test import Client
    c = Client()
    c.force_login(user)
    assert "round 3" in c.get(f"/galaxies/{g.pk}/").content.decode().lower()


def test_prediction_columns_are_published_only_whole(make_user, tmp_path):
    """A failure while predicting leaves no column files behind (ml.atomic partials removed)."""
    task = make_task(n=12)
    es = task.embedding_set
    with pytest.raises(RuntimeError):
        with store.PredictionWriter(tmp_path / "predictions", es) as writer:
            writer.put("uncertainty", np.array([0, 3]), np.array([0.5, 0.25], np.float32))
            raise RuntimeError("worker died")
    assert list((tmp_path / "predictions").iterdir()) == []
    with store.PredictionWriter(tmp_path / "p2", es) as writer:
        writer.put("uncertainty", np.array([3, 0]), np.array([0.25, 0.5], np.float32))
    col = np.load(tmp_path / "p2" / "uncertainty.npy")
    assert col.shape == (es.n,) and col[0] == 0.5 and col[3] == 0.25 and np.isnan(col[1])
    assert (tmp_path / "p2" / "meta.json").exists()


def test_task_rows_positions_use_the_id_index(make_user):
    task = make_task(n=20)
    rows = store.task_rows(task)
    gids = rows.galaxy_ids
    assert rows.rows.dtype == np.int64 and gids.dtype == np.int64
    np.testing.assert_array_equal(rows.positions([gids[5], 10**12, gids[2]]), [5, 2])   # input order, missing dropped
    assert not hasattr(rows, "position")


def test_uncertainty_picks_come_from_a_bounded_top_k_pool(make_user, monkeypatch):
    from webapp.labeling.services import picking

    task = make_task(n=40)
    user = make_user("labeler")
    label_galaxies(task, user, 16)
    assert run(rounds.start_round(task, user)).status == "succeeded"
    monkeypatch.setattr(picking, "CANDIDATES", 6)
    rows = store.task_rows(task)
    unc = store.predictions_for(store.serving_round(task), rows.galaxy_ids)["uncertainty"]
    taken = set(picking.excluded_galaxies(task).tolist())
    free = [(-u, i) for i, (g, u) in enumerate(zip(rows.galaxy_ids.tolist(), unc)) if g not in taken]
    top6 = {int(rows.galaxy_ids[i]) for _, i in sorted(free)[:6]}
    picks = picking.pick_next(task, 4)
    assert len(picks) == 4 and {p.galaxy_id for p in picks} <= top6
    assert not {p.galaxy_id for p in picks} & taken


def test_automatic_rounds_are_spaced_by_the_minimum_interval(make_user, settings):
    """Many people at once: round_every labels arrive faster than a round trains.  The next
    automatic round waits until AUTO_ROUND_MIN_SECONDS after the last one started; the counter is
    kept, so the first label after the wait starts it."""
    from datetime import timedelta

    from django.utils import timezone

    from webapp.labeling.models import Task
    from webapp.labeling.services import stats
    settings.AUTO_ROUND_MIN_SECONDS = 60
    task = make_task(n=40, round_every=3)
    user = make_user("labeler")
    galaxies = list(Galaxy.objects.filter(survey=task.surveys.first()).order_by("image_index"))

    def label(g):
        labels.record_label(task, g.pk, user, "value", class_index=true_class(g))
        return rounds.maybe_start_auto_round(task)

    assert [label(g) is not None for g in galaxies[:3]] == [False, False, True]   # the first round: no wait
    first = Round.objects.get(task=task)
    assert run(first).status == "succeeded"
    assert [label(g) for g in galaxies[3:7]] == [None] * 4                       # 4 labels, still too soon
    progress = stats.round_progress(Task.objects.get(pk=task.pk))    # as a request reads it
    assert progress["since_last_round"] == 4 and 0 < progress["auto_round_wait_s"] <= 60
    Round.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert stats.round_progress(Task.objects.get(pk=task.pk))["auto_round_wait_s"] == 0
    second = label(galaxies[7])
    assert second is not None and second.number == 2 and second.trigger == Round.Trigger.AUTO
    settings.AUTO_ROUND_MIN_SECONDS = 0                                          # no spacing: as before
    assert rounds.auto_round_wait(task) == 0
