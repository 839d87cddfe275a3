"""Fixtures shared by the whole suite. Tests talk to real services: the database Django is
configured with (PostgreSQL on CI) and the Redis at REDIS_URL (flushed around each test)."""

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.accounts.factories import UserFactory

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def redis_clean():
    """Every test starts and ends with an empty Redis (throttle counters, queues, streams)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db):
    return UserFactory(password=PASSWORD)


@pytest.fixture
def other_user(db):
    return UserFactory(password=PASSWORD)


@pytest.fixture
def staff_user(db):
    return UserFactory(password=PASSWORD, is_staff=True, is_superuser=True)


def _client_for(user) -> APIClient:
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


@pytest.fixture
def auth_client(user) -> APIClient:
    """A client holding a real access token for ``user``, obtained through the login endpoint."""
    return _client_for(user)


@pytest.fixture
def other_client(other_user) -> APIClient:
    return _client_for(other_user)


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    return _client_for(staff_user)


@pytest.fixture(scope="session")
def standin_server():
    """The stand-in provider on a free port, for the whole session."""
    from llm.standin import StandinServer

    server = StandinServer(reply_tokens=24).start()
    yield server
    server.stop()


@pytest.fixture
def standin(standin_server, settings):
    """Point the catalog's stand-in models at the running stand-in provider."""
    settings.STANDIN_BASE_URL = standin_server.url
    return standin_server
