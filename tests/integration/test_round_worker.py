"""Labeling rounds through a real ``celery worker`` process (cpu queue), and a failing retrain."""
import numpy as np
import pytest

from tests.integration.conftest import wait_for_job
from tests.labeling.factories import make_task, true_class
from webapp.catalog.models import Galaxy
from webapp.labeling.models import QueueItem, Round, Task
from webapp.labeling.services import labels, rounds, store

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def served(task, rnd=None) -> dict[int, int]:
    """{galaxy id: predicted class} of a round (the serving one by default), from its columnar files."""
    rnd = rnd or store.serving_round(task)
    gids = store.task_rows(task).galaxy_ids
    preds = store.predictions_for(rnd, gids)
    ok = np.isfinite(preds["uncertainty"])
    return {int(g): int(np.argmax(p)) for g, p, o in zip(gids, preds["probs"], ok) if o}


@pytest.fixture
def labeler(role_groups):
    from django.contrib.auth.models import Group, User
    user = User.objects.create_user("worker-labeler", password="x")
    user.groups.add(Group.objects.get_or_create(name="labeler")[0])
    return user


def test_round_runs_on_a_real_worker_and_a_failed_retrain_keeps_the_old_model(celery_worker_proc, labeler):
    task = make_task(n=40, head_config={"kind": "mlp_ensemble", "hidden": [16], "n_members": 3,
                                        "min_steps": 60, "max_steps": 60})
    for g in Galaxy.objects.order_by("image_index")[:12]:
        labels.record_label(task, g.pk, labeler, "value", class_index=true_class(g))
    first = rounds.start_round(task, labeler)
    job = wait_for_job(first.job_id, proc=celery_worker_proc)
    assert (job.status, job.progress, job.queue) == ("succeeded", 1.0, "cpu"), job.error
    first.refresh_from_db()
    assert first.status == "ready" and first.model_version.startswith(f"{task.pk}.1-mlp_ensemble-")
    assert job.result["model_version"] == first.model_version and job.result["n_labels"] == 12
    assert len(served(task, first)) == 40
    assert QueueItem.objects.filter(task=task, round_number=1, done=False).count() == task.batch_size
    serving = served(task)
    assert sum(serving[g.pk] == true_class(g) for g in Galaxy.objects.all()) >= 36

    # A retrain that cannot work (a bad head setting saved by a curator) fails on the worker ...
    Task.objects.filter(pk=task.pk).update(head_config={"kind": "mlp_ensemble", "n_members": 0})
    task.refresh_from_db()
    second = rounds.start_round(task, labeler)
    job = wait_for_job(second.job_id, proc=celery_worker_proc)
    second.refresh_from_db()
    assert job.status == "failed" and second.status == "failed" and second.error
    # ... and round 1 keeps serving, with its predictions untouched.
    assert store.serving_round(task).pk == first.pk
    assert served(task) == serving
    assert list(Round.objects.filter(task=task).values_list("number", "status")) == [(2, "failed"), (1, "ready")]


def test_finetune_chain_runs_on_a_real_worker_and_switches_the_task(celery_worker_proc, labeler):
    """label_finetune (gpu queue, CPU here) -> embed -> label_use_embeddings -> label_round."""
    from tests.labeling.factories import make_encoder_task
    from webapp.jobs.models import Job
    from webapp.labeling.services import finetune

    task, ids = make_encoder_task()
    old_set = task.embedding_set_id
    for i, g in enumerate(ids[:20]):
        labels.record_label(task, g, labeler, "value", class_index=i % 4)
    job = finetune.start_finetune(task, labeler, {"epochs": 1, "batch_size": 8})
    chain = []
    while job is not None:
        done = wait_for_job(job.pk, proc=celery_worker_proc)
        assert done.status == "succeeded", (done.kind, done.error)
        chain.append(done.kind)
        job = Job.objects.filter(parent=done).first()
        if job is None and done.kind == "label_use_embeddings":
            job = Job.objects.get(pk=done.result["round_job_id"])
    assert chain == ["label_finetune", "embed", "label_use_embeddings", "label_round"]
    task.refresh_from_db()
    assert task.embedding_set_id != old_set and task.embedding_set.encoder.config["finetune"]["task_id"] == task.pk
    rnd = store.serving_round(task)
    assert rnd.number == 1 and len(served(task, rnd)) == 24
