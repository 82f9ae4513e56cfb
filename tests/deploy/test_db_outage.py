"""A database outage gives a clear, retryable 503 (JSON on the API), in a view or in middleware."""
import pytest
from django.db import OperationalError
from django.test import RequestFactory

from webapp import views
from webapp.middleware import DatabaseUnavailableMiddleware

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_view_outage_becomes_a_json_503_for_the_api():
    request = RequestFactory().post("/api/tasks/1/labels")
    response = DatabaseUnavailableMiddleware(lambda r: None).process_exception(
        request, OperationalError("server closed the connection unexpectedly"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert b"was not stored" in response.content and b'"retry": true' in response.content


def test_other_exceptions_are_left_alone():
    request = RequestFactory().get("/surveys/")
    assert DatabaseUnavailableMiddleware(lambda r: None).process_exception(request, ValueError("x")) is None


def test_handler500_turns_an_outage_in_middleware_into_a_503_page():
    request = RequestFactory().get("/surveys/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        response = views.server_error(request)
    assert response.status_code == 503
    assert b"The database is unavailable" in response.content


def test_handler500_for_ordinary_errors_says_nothing_was_half_saved():
    request = RequestFactory().get("/api/surveys/")
    try:
        raise KeyError("boom")
    except KeyError:
        response = views.server_error(request)
    assert response.status_code == 500 and b"logged" in response.content
