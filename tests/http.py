"""Small helpers for tests that talk to the JSON API through Django's test client."""
import json


def post_json(client, url: str, body=None, **extra):
    """POST ``body`` (default {}) as application/json; returns the test client's response."""
    return client.post(url, data=json.dumps({} if body is None else body), content_type="application/json",
                       **extra)
