from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_anonymous_is_sent_to_login(client):
    response = client.get("/jobs/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_api_requires_login_with_json_401(client):
    response = client.get("/api/jobs/")
    assert (response.status_code, response.json()) == (401, {"error": "authentication required"})


def test_job_list_and_api_show_progress(role_clients):
    job = services.create_job("selftest", {}, dispatch=False)
    Job.objects.filter(pk=job.pk).update(progress=0.4, message="step 4/10", status="running")
    page = role_clients["viewer"].get("/jobs/")
    assert page.status_code == 200
    assert b'data-job-id="%d"' % job.pk in page.content
    data = role_clients["viewer"].get(f"/api/jobs/?ids={job.pk}").json()
    assert [(j["id"], j["progress"], j["message"]) for j in data["jobs"]] == [(job.pk, 0.4, "step 4/10")]


def test_api_rejects_bad_ids(role_clients):
    response = role_clients["viewer"].get("/api/jobs/?ids=1,x")
    assert response.status_code == 400


@pytest.mark.parametrize("role,allowed", [("anonymous", False), ("viewer", False), ("labeler", False),
                                          ("curator", True), ("admin", True)])
def test_cancel_needs_curator(role_clients, role, allowed):
    job = services.create_job("selftest", {}, dispatch=False)
    response = role_clients[role].post(f"/jobs/{job.pk}/cancel")
    job.refresh_from_db()
    assert job.status == ("cancelled" if allowed else "queued")
    assert response.status_code == (302 if allowed or role == "anonymous" else 403)


def test_job_list_query_count_is_constant(role_clients, django_assert_max_num_queries):
    for _ in range(20):
        services.create_job("selftest", {}, dispatch=False)
    with django_assert_max_num_queries(8):
        assert role_clients["viewer"].get("/jobs/").status_code == 200


def test_a_job_that_gave_up_says_so_on_its_page(role_clients, settings):
    settings.JOB_MAX_ATTEMPTS = 3
    job = services.create_job("selftest", {}, dispatch=False)
    Job.objects.filter(pk=job.pk).update(status="running", attempts=3,  # three workers lost under it
                                         heartbeat_at=timezone.now() - timedelta(days=1))
    assert services.give_up_if_exhausted(job.pk) is True
    page = role_clients["viewer"].get(f"/jobs/{job.pk}/").content.decode()
    assert '<strong>gave up after 3 attempts</strong>: its worker was lost on every attempt' in page
    assert '<dd class="job-attempts">3 of at most 3</dd>' in page


def test_an_ordinary_failure_does_not_claim_to_have_given_up(role_clients):
    job = services.create_job("selftest", {"fail": True}, dispatch=False)
    services.execute_job(job.pk, "w")
    page = role_clients["viewer"].get(f"/jobs/{job.pk}/").content.decode()
    assert "failed: self-test asked to fail" in page and "job-gave-up" not in page
