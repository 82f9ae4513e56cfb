"""The labeling queue: manual enqueue goes first, leases keep labellers apart, refills explain picks."""
import pytest

from tests.catalog.factories import make_survey
from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.labeling.models import QueueItem
from webapp.labeling.services import labels, queue

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def task():
    return make_task(n=40)


def galaxy_ids(task):
    return list(Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index").values_list("pk", flat=True))


def test_enqueue_puts_galaxies_first_in_the_given_order(task, make_user):
    user = make_user("labeler")
    ids = galaxy_ids(task)
    first = queue.next_items(task, user, 3)          # a cold-start batch exists now
    assert len(first) == 3
    queue.release_leases(task, user)
    assert queue.enqueue_galaxies(task, [ids[30], ids[5], ids[30]], user) == 2
    items = queue.next_items(task, user, 4)
    assert [q.galaxy_id for q in items[:2]] == [ids[30], ids[5]]
    assert items[0].source == "manual" and items[0].reason == f"sent to this task by {user.username}"
    # sending again moves it to the front and does not duplicate it
    queue.release_leases(task, user)
    assert queue.enqueue_galaxies(task, [ids[5]], user) == 1
    assert queue.next_items(task, user, 1)[0].galaxy_id == ids[5]
    assert QueueItem.objects.filter(task=task, galaxy_id=ids[5]).count() == 1


def test_enqueue_ignores_galaxies_of_other_surveys(task, make_user):
    other = make_survey(name="Other", slug="other", n=3)
    foreign = list(Galaxy.objects.filter(survey=other).values_list("pk", flat=True))
    assert queue.enqueue_galaxies(task, foreign + [999999], make_user("labeler")) == 0
    assert not QueueItem.objects.filter(task=task, source="manual").exists()


def test_cold_start_refill_gives_distinct_diverse_seeds_with_reasons(task, make_user):
    items = queue.next_items(task, make_user("labeler"), 8)
    assert len({q.galaxy_id for q in items}) == 8
    assert all(q.source == "cold_start" for q in items)
    assert all("nearest to centroid" in q.reason and "no model yet" in q.reason for q in items)
    # k-means on 4 well separated classes: the 8 seeds cover all 4 classes
    classes = {g.image_index % 4 for g in Galaxy.objects.filter(pk__in=[q.galaxy_id for q in items])}
    assert classes == {0, 1, 2, 3}


def test_two_labellers_get_different_galaxies_and_answers_remove_them(task, make_user):
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")
    a = [q.galaxy_id for q in queue.next_items(task, ann, 4)]
    b = [q.galaxy_id for q in queue.next_items(task, bob, 4)]
    assert len(a) == len(b) == 4 and not set(a) & set(b)
    labels.record_label(task, a[0], ann, "value", class_index=1)
    labels.record_label(task, a[1], ann, "skip")
    again = [q.galaxy_id for q in queue.next_items(task, ann, 4)]
    assert a[0] not in again and a[1] not in again and again[:2] == a[2:]
    assert QueueItem.objects.get(task=task, galaxy_id=a[0]).done is True
    # undo brings the galaxy back for its labeller
    labels.undo_last(task, ann)          # undoes the skip of a[1]
    queue.release_leases(task, ann)
    assert a[1] in [q.galaxy_id for q in queue.next_items(task, ann, 6)]


def test_a_task_on_unfinished_embeddings_says_why_it_cannot_pick(task, make_user, client):
    from webapp.labeling.models import Task
    task.embedding_set.status = "building"
    task.embedding_set.save()
    task = Task.objects.get(pk=task.pk)
    user = make_user("labeler")
    client.force_login(user)
    r = client.get(f"/api/tasks/{task.pk}/queue")
    assert r.status_code == 409 and "is building" in r.json()["error"]
    # galaxies sent from the map can still be labelled meanwhile
    queue.enqueue_galaxies(task, galaxy_ids(task)[:2], user)
    r = client.get(f"/api/tasks/{task.pk}/queue?n=5")
    assert r.status_code == 200 and len(r.json()["items"]) == 2


@pytest.mark.refill_async
def test_next_never_picks_inside_the_request_and_queues_one_refill_job(make_user, monkeypatch):
    """A labeller who runs dry gets what is queued at once; the strategy runs in a job, one per task."""
    from webapp.jobs.models import Job
    from webapp.jobs.services import execute_job

    task = make_task(n=40)
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")

    def no_picking_here(*args, **kwargs):
        raise AssertionError("the strategy ran inside the request")
    monkeypatch.setattr(queue, "pick_next", no_picking_here)
    assert queue.next_items(task, ann, 4) == []
    assert queue.next_items(task, bob, 4) == []                      # a second request: same pending job
    jobs = Job.objects.filter(kind="label_refill")
    assert jobs.count() == 1 and jobs.get().params == {"task_id": task.pk} and jobs.get().queue == "cpu"
    monkeypatch.undo()
    assert execute_job(jobs.get().pk, worker="test") == "succeeded"
    assert Job.objects.get(kind="label_refill").result["added"] == task.batch_size
    assert len(queue.next_items(task, ann, 4)) == 4                  # the job's picks are served
    assert queue.pending_refill(task) is None                        # a full batch queued: no new job
    assert Job.objects.filter(kind="label_refill").count() == 1


@pytest.mark.refill_async
def test_a_refill_adds_enough_for_everyone_labelling_at_once(make_user, monkeypatch):
    """Many people at once: a refill of task.batch_size would run dry at once (issue 16's load
    test: 50 people, batches of 20, most "next" requests empty), so it scales with the leases."""
    from webapp.jobs.models import Job
    from webapp.jobs.services import execute_job

    monkeypatch.setattr(queue, "PAGE_REQUEST", 2)          # a 120-galaxy survey shows the scaling
    task = make_task(n=120)
    people = [make_user("labeler", f"p{i}") for i in range(5)]
    queue.refill(task)                                     # the first batch: 8 galaxies
    assert queue.active_labellers(task) == 0 and queue.refill_size(task) == task.batch_size
    for person in people[:4]:
        assert len(queue.next_items(task, person, 2, refill_when_empty=False)) == 2
    assert queue.active_labellers(task) == 4
    assert queue.refill_size(task) == 4 * 2 * queue.REFILL_REQUESTS_PER_LABELLER == 16
    assert queue.next_items(task, people[4], 2) == []       # all 8 are leased: the fifth waits for a refill
    job = Job.objects.get(kind="label_refill")
    assert execute_job(job.pk, worker="test") == "succeeded"
    job.refresh_from_db()
    assert job.result["batch"] == job.result["added"] == 16   # not 8: enough for the 4 people holding leases
    assert QueueItem.objects.filter(task=task).count() == 8 + 16
    monkeypatch.setattr(queue, "MAX_REFILL", 10)
    assert queue.refill_size(task) == 10                    # capped (never below the task's own batch)
    monkeypatch.setattr(queue, "MAX_REFILL", 1)
    assert queue.refill_size(task) == task.batch_size
