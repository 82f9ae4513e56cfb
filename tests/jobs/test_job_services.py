"""Job lifecycle: create, claim once, progress, cancel, follow-ups, reaper."""
from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def make_job(**kw):
    return services.create_job("selftest", kw.pop("params", {"steps": 3, "delay": 0}), dispatch=False, **kw)


def test_claim_is_atomic_second_claim_gets_nothing():
    job = make_job()
    first = services.claim_job(job.pk, "w1")
    second = services.claim_job(job.pk, "w2")
    assert first is not None and first.status == "running"
    assert second is None
    assert Job.objects.get(pk=job.pk).worker == "w1"


def test_stale_running_job_can_be_reclaimed_and_shows_retry(settings):
    job = make_job()
    services.claim_job(job.pk, "dead-worker")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 5))
    again = services.claim_job(job.pk, "w2")
    assert again is not None
    job.refresh_from_db()
    assert (job.attempts, job.worker) == (2, "w2")
    assert job.message.startswith("retry 1")


def test_execute_runs_handler_and_records_result():
    job = make_job()
    assert services.execute_job(job.pk, "w") == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.progress, job.result) == ("succeeded", 1.0, {"steps": 3, "attempt": 1})
    assert job.finished_at is not None


def test_execute_twice_runs_once():
    job = make_job()
    services.execute_job(job.pk, "w")
    assert services.execute_job(job.pk, "w") == "skipped"
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_failure_records_error_text():
    job = make_job(params={"fail": True})
    assert services.execute_job(job.pk, "w") == "failed"
    job.refresh_from_db()
    assert job.status == "failed"
    assert "self-test asked to fail" in job.error
    assert job.message == "failed: self-test asked to fail"


def test_cancel_queued_job_never_runs():
    job = make_job()
    assert services.request_cancel(job) is True
    assert services.execute_job(job.pk, "w") == "skipped"
    assert Job.objects.get(pk=job.pk).status == "cancelled"


def test_progress_raises_when_cancel_requested_and_job_is_cancelled():
    job = make_job(params={"steps": 50, "delay": 0})
    services.claim_job(job.pk, "w")
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    progress = services.Progress(Job.objects.get(pk=job.pk), interval=0)
    with pytest.raises(services.JobCancelled):
        progress(1, 10, "x")


def test_progress_sub_maps_into_span():
    job = make_job()
    progress = services.Progress(job, interval=0).sub(0.5, 1.0)
    progress(1, 2, "half of second half")
    job.refresh_from_db()
    assert job.progress == pytest.approx(0.75)
    assert job.message == "half of second half"


def test_metric_series_is_saved():
    job = make_job()
    progress = services.Progress(job, interval=0)
    progress.metric("loss", 1, 2.5)
    progress.metric("loss", 2, 2.0)
    progress.flush()
    job.refresh_from_db()
    assert job.metrics == {"loss": [[1, 2.5], [2, 2.0]]}


def test_followups_receive_parent_results(django_capture_on_commit_callbacks):
    job = services.create_job("selftest", {"steps": 2, "delay": 0}, dispatch=False,
                              then=[{"kind": "selftest", "params": {"steps": "$parent.steps", "delay": 0}}])
    with django_capture_on_commit_callbacks(execute=False):
        services.execute_job(job.pk, "w")
    child = Job.objects.get(parent=job)
    assert (child.kind, child.params["steps"], child.status) == ("selftest", 2, "queued")


def test_a_followup_that_cannot_start_fails_the_job_clearly_and_leaves_no_child():
    job = services.create_job("selftest", {"steps": 1, "delay": 0}, dispatch=False,
                              then=[{"kind": "selftest", "params": {"steps": "$parent.no_such_key"}}])
    assert services.execute_job(job.pk, "w") == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "follow-up could not start" in job.message and "no_such_key" in job.message
    assert not Job.objects.filter(parent=job).exists()


def test_success_and_followups_commit_together(monkeypatch):
    """If creating a follow-up dies, the parent is neither 'succeeded' nor left running for the reaper."""
    job = services.create_job("selftest", {"steps": 1, "delay": 0}, dispatch=False,
                              then=[{"kind": "selftest", "params": {"steps": 1, "delay": 0}}])

    def crash(job, result):
        services.create_job("selftest", {"steps": 1}, parent=job, dispatch=False)  # rolled back below
        raise RuntimeError("follow-up machinery broke")
    monkeypatch.setattr(services, "_start_followups", crash)
    assert services.execute_job(job.pk, "w") == "failed"
    job.refresh_from_db()
    assert (job.status, job.message) == ("failed", "its follow-up could not start: follow-up machinery broke")
    assert not Job.objects.filter(parent=job).exists()


def test_a_poison_followup_fails_the_job_once_and_the_reaper_leaves_it(monkeypatch):
    """An unknown follow-up kind raises ValueError (not KeyError): the job still ends FAILED."""
    sent = []
    monkeypatch.setattr(services, "dispatch_job", sent.append)
    job = services.create_job("selftest", {"steps": 1, "delay": 0}, dispatch=False,
                              then=[{"kind": "no_such_kind", "params": {}}])
    assert services.execute_job(job.pk, "w") == "failed"
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.message.startswith("its follow-up could not start: unknown job kind 'no_such_kind'")
    assert "ValueError" in job.error
    assert not Job.objects.filter(parent=job).exists()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.reap_jobs() == [] and sent == []


def test_a_handler_that_always_raises_fails_on_its_first_attempt_and_is_never_rerun():
    job = make_job(params={"fail": True})
    assert services.execute_job(job.pk, "w") == "failed"
    assert services.execute_job(job.pk, "w") == "skipped"  # a redelivered message
    job.refresh_from_db()
    assert (job.status, job.attempts, job.message) == ("failed", 1, "failed: self-test asked to fail")


def _lose_worker(job_id, settings):
    """What a SIGKILLed worker leaves behind: a running row whose heartbeat goes stale."""
    Job.objects.filter(pk=job_id).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 5))


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_job_whose_worker_dies_every_time_gives_up_after_max_attempts(settings, max_attempts):
    settings.JOB_MAX_ATTEMPTS = max_attempts
    job = make_job()
    for attempt in range(1, max_attempts + 1):
        assert services.claim_job(job.pk, f"w{attempt}") is not None
        _lose_worker(job.pk, settings)
    assert services.execute_job(job.pk, "w-last") == "gave up"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.message) == ("failed", max_attempts, f"gave up after {max_attempts} attempts")
    assert job.finished_at is not None and f"LATENTSKY_JOB_MAX_ATTEMPTS={max_attempts}" in job.error
    assert services.execute_job(job.pk, "w-again") == "skipped"


def test_the_reaper_fails_an_exhausted_job_instead_of_resending_it(settings, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "dispatch_job", sent.append)
    settings.JOB_MAX_ATTEMPTS = 2
    exhausted, retryable = make_job(), make_job()
    for _ in range(2):
        services.claim_job(exhausted.pk, "w")
        _lose_worker(exhausted.pk, settings)
    services.claim_job(retryable.pk, "w")
    _lose_worker(retryable.pk, settings)
    Job.objects.update(dispatched_at=None)
    assert services.reap_jobs() == [retryable.pk]
    assert sent == [retryable.pk]
    exhausted.refresh_from_db()
    assert (exhausted.status, exhausted.message) == ("failed", "gave up after 2 attempts")


def test_a_retry_says_which_attempt_it_is(settings):
    settings.JOB_MAX_ATTEMPTS = 3
    job = make_job()
    services.claim_job(job.pk, "w1")
    _lose_worker(job.pk, settings)
    services.claim_job(job.pk, "w2")
    job.refresh_from_db()
    assert job.message == "retry 1 (attempt 2 of 3) after the previous worker was lost"


def test_reaper_resends_jobs_of_dead_workers(settings, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "dispatch_job", sent.append)
    alive, dead = make_job(), make_job()
    for j in (alive, dead):
        services.claim_job(j.pk, "w")
    Job.objects.filter(pk=dead.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.reap_jobs() == [dead.pk]
    assert sent == [dead.pk]


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown job kind 'nope'"):
        services.create_job("nope", {}, dispatch=False)


def test_reaper_resends_a_lost_queued_message_once_per_period(monkeypatch):
    sent = []

    def fake_dispatch(job_id):  # what dispatch_job records, without a broker
        sent.append(job_id)
        Job.objects.filter(pk=job_id).update(dispatched_at=timezone.now())
    monkeypatch.setattr(services, "dispatch_job", fake_dispatch)
    old = make_job()
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1),
                                         dispatched_at=timezone.now() - timedelta(hours=1))
    fresh = make_job()
    assert services.reap_jobs(queued_older_than=600) == [old.pk]
    assert services.reap_jobs(queued_older_than=600) == []  # just re-sent: not again this period
    assert sent == [old.pk] and fresh.pk not in sent
