"""Counting the SQL queries one request makes, for tests that pin list endpoints' cost."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def queries_for_get(client, url: str) -> int:
    """How many queries ``GET url`` runs (the response must be a 200), once the per-process
    caches (project.hotcache: the signed-in user, the catalog) are warm: the first request of a
    test pays for filling them, and what is pinned is what grows with rows."""
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(ctx)
