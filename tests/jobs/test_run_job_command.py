"""manage.py run_job: a job runs in the calling process, without a worker, and says how it ended."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_runs_inline_and_its_result_is_printed(capsys):
    call_command("run_job", "selftest", "--param", "steps=3", "--param", "delay=0")
    job = Job.objects.get(kind="selftest")
    assert job.status == Job.Status.SUCCEEDED
    assert job.result["steps"] == 3  # the JSON value was parsed, not kept as the string "3"
    assert '"steps": 3' in capsys.readouterr().out


def test_a_failing_job_exits_non_zero_with_its_message():
    with pytest.raises(CommandError, match="self-test asked to fail"):
        call_command("run_job", "selftest", "--params", '{"fail": true}')
    assert Job.objects.get(kind="selftest").status == Job.Status.FAILED


def test_bad_params_are_refused_before_any_job_exists():
    with pytest.raises(CommandError, match="not JSON"):
        call_command("run_job", "selftest", "--params", "{steps: 3}")
    with pytest.raises(CommandError, match="key=value"):
        call_command("run_job", "selftest", "--param", "steps")
    assert not Job.objects.exists()


def test_follow_ups_run_inline_too():
    # The same path run_job takes, with a follow-up spec: both jobs end without a worker.
    call_command("run_job", "selftest", "--params",
                 '{"steps": 1, "delay": 0, "_then": [{"kind": "selftest", "params": {"steps": 2, "delay": 0}}]}')
    jobs = list(Job.objects.order_by("pk"))
    assert [j.status for j in jobs] == [Job.Status.SUCCEEDED, Job.Status.SUCCEEDED]
    assert jobs[1].parent_id == jobs[0].pk and jobs[1].result["steps"] == 2


def test_a_queued_job_runs_by_id_and_a_finished_one_is_refused():
    from webapp.jobs.services import create_job
    queued = create_job("selftest", {"steps": 1, "delay": 0}, dispatch=False)
    call_command("run_job", "--job", str(queued.pk))
    queued.refresh_from_db()
    assert queued.status == Job.Status.SUCCEEDED
    with pytest.raises(CommandError, match="succeeded, not queued"):
        call_command("run_job", "--job", str(queued.pk))
    with pytest.raises(CommandError, match="not both"):
        call_command("run_job", "selftest", "--job", str(queued.pk))
