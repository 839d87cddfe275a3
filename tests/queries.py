"""Counting the SQL queries one request makes, for tests that pin list endpoints' cost."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def queries_for_get(client, url: str) -> int:
    """How many queries ``GET url`` runs (the response must be a 200)."""
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(ctx)
