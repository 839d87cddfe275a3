"""The API keeps the promises its OpenAPI schema makes, checked by schemathesis.

Every operation of ``/api/schema/`` is called with generated requests, valid and invalid,
against Parley's ASGI app served by uvicorn (as in production), real PostgreSQL and Redis,
signed in with a real JWT. Path ids are real objects of the caller (a conversation with a
finished reply, a failed and a queued job from a real RQ worker, an API key) so operations get
past 404; a negative case keeps its malformed id. Checks: no 5xx, only documented status codes,
bodies and headers as documented, documented content types, invalid input refused, 405 with
``Allow``, missing credentials refused.

Run alone with ``pytest -m schemathesis``; ``SCHEMATHESIS_MAX_EXAMPLES`` raises the number of
generated cases per operation (default below, sized for CI on two cores)."""

import functools
import json
import os
from collections import Counter
from collections.abc import Iterator

import jsonschema_rs
import pytest
import requests
import schemathesis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation

from conftest import PASSWORD
from tests.accounts.factories import UserFactory
from tests.live import asgi_server, work_until_idle
from tests.llm.factories import StandinModelFactory

# The fuzzed operations carry no django_db mark: their world is committed by a module fixture
# (outside any per-test transaction, which on SQLite would lock the server's threads out) and
# flushed after them. test_the_schema_fuzzed_is_the_one_served asks for the test database.
pytestmark = pytest.mark.schemathesis

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": int(os.environ.get("SCHEMATHESIS_SEED", "20261125")),
        # Credentials are the world's real JWT, sent with every case; ignored_auth still
        # checks what happens without them.
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "database": "none",
            "with-security-parameters": False,
        },
        "request-timeout": 10,
        "checks": {
            # Valid by the schema yet refused by a rule JSON Schema cannot state (a wrong current
            # password, an expiry in the past, an unknown model, a weak password): a 400 there is
            # the documented, correct answer. Every other check runs.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)


def _raw_schema() -> dict:
    """The document ``/api/schema/`` serves, built in-process so tests are known at collection."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


RAW_SCHEMA = _raw_schema()
schema = schemathesis.openapi.from_dict(RAW_SCHEMA, config=CONFIG)


@functools.cache
def _json_body_validator(path: str, method: str) -> jsonschema_rs.Validator:
    request_body = RAW_SCHEMA["paths"][path][method]["requestBody"]
    body_schema = request_body["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**body_schema, "components": RAW_SCHEMA["components"]})


def _only_numbers_read_as_text(case) -> bool:
    """Whether the body is valid once each top-level number is read as its text."""
    if not isinstance(case.body, dict):
        return False
    read = {
        name: str(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for name, value in case.body.items()
    }
    if read == case.body:
        return False
    try:
        validator = _json_body_validator(case.operation.path, case.method.lower())
    except KeyError:  # no JSON body documented
        return False
    return validator.is_valid(read)


@schema.hook("filter_failure")
def keep_unless_number_read_as_text(context, failure, case, response) -> bool:
    """DRF reads a JSON number sent for a text field as its text (``{"name": 0}`` is "0"), a
    reading Parley keeps: accepting such a body is not a failure. Nothing else is let off."""
    return not (isinstance(failure, AcceptedNegativeData) and _only_numbers_read_as_text(case))


CASES_BY_OPERATION: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary(request):
    """Prints how many cases each operation ran, whatever the outcome."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not CASES_BY_OPERATION:
        return
    total = sum(CASES_BY_OPERATION.values())
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(STATUSES.items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(
            f"schemathesis: {len(CASES_BY_OPERATION)} operations, {total} cases "
            f"(statuses {statuses})"
        )
        for label, count in sorted(CASES_BY_OPERATION.items()):
            reporter.write_line(f"  {count:5d}  {label}")


class World:
    """One user's real objects, created through the API and a real worker."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._owned: dict[str, str] = {}
        self.http = requests.Session()
        self.user = UserFactory(password=PASSWORD)
        token = self._post("/api/v1/auth/token/", {"email": self.user.email, "password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {token['access']}"}
        self.http.headers.update(self.headers)
        good = StandinModelFactory(slug="fuzz-model", provider_model="standin-chat")
        broken = StandinModelFactory(slug="fuzz-broken", provider_model="standin-400")
        self.model_slug = good.slug

        self.conversation = self.new_conversation(good.slug)
        posted = self._post(
            f"/api/v1/conversations/{self.conversation}/messages/", {"content": "Hello there"}
        )
        self.reply = posted["assistant_message"]["id"]
        self.question = posted["user_message"]["id"]
        failing = self.new_conversation(broken.slug)
        self.failed_job = self._post(
            f"/api/v1/conversations/{failing}/messages/", {"content": "Fail, please"}
        )["job"]["id"]
        work_until_idle()  # a real worker: one reply completed, one job failed
        waiting = self.new_conversation(good.slug)
        self.queued_job = self._post(
            f"/api/v1/conversations/{waiting}/messages/", {"content": "Wait for me"}
        )["job"]["id"]
        self.api_key = self._post("/api/v1/auth/api-keys/", {"name": "fuzz"})["id"]

    def _post(self, path: str, body: dict) -> dict:
        response = self.http.post(self.base_url + path, json=body, timeout=10)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def new_conversation(self, model_slug: str | None = None) -> str:
        body = {"model": model_slug or self.model_slug, "title": "Fuzzed"}
        return self._post("/api/v1/conversations/", body)["id"]

    def path_ids(self, method: str, path: str) -> dict:
        """Real values for the operation's path parameters. Operations that change a
        conversation get their own, so they cannot spoil the one the others read."""
        ids = {
            "conversation_pk": self.conversation,
            "message_pk": self.reply,
            "slug": self.model_slug,
        }
        if method == "DELETE" and path == "/api/v1/conversations/{id}/":
            ids["id"] = self.new_conversation()  # every case finds one to delete
        elif method == "PATCH" and path == "/api/v1/conversations/{id}/":
            ids["id"] = self._own_conversation(method, path)
        elif method == "POST" and path == "/api/v1/conversations/{conversation_pk}/messages/":
            # A fresh one each time: after a 202 the reply is in flight (nothing works it), and
            # the same conversation would answer 409 from then on.
            ids["conversation_pk"] = self.new_conversation()
        elif path == "/api/v1/conversations/{conversation_pk}/messages/{id}/edit/":
            ids["id"] = self.question
        elif path.startswith("/api/v1/conversations/{conversation_pk}/messages/{id}"):
            ids["id"] = self.reply
        elif path.startswith("/api/v1/conversations/{id}"):
            ids["id"] = self.conversation
        elif path.startswith("/api/v1/auth/api-keys/"):
            ids["id"] = self.api_key
        elif path == "/api/v1/jobs/{id}/retry/":
            ids["id"] = self.failed_job
        elif path.startswith("/api/v1/jobs/"):
            ids["id"] = self.queued_job
        return ids

    def _own_conversation(self, method: str, path: str) -> str:
        key = f"{method} {path}"
        if key not in self._owned:
            self._owned[key] = self.new_conversation()
        return self._owned[key]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, standin_server) -> Iterator[World]:
    """One world for every operation (a real worker run is the costly part), committed so
    the server sees it, and flushed at the end as a transactional test would be."""
    rest = dict(django_settings.REST_FRAMEWORK)
    # Throttles raised for the run: the point is the schema, not the rate limits.
    rest["DEFAULT_THROTTLE_RATES"] = dict.fromkeys(rest["DEFAULT_THROTTLE_RATES"], "1000000/minute")
    with (
        django_db_blocker.unblock(),
        override_settings(STANDIN_BASE_URL=standin_server.url, REST_FRAMEWORK=rest),
        asgi_server() as base_url,
    ):
        try:
            yield World(base_url)
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_the_schema_fuzzed_is_the_one_served(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response.json() == RAW_SCHEMA


@schema.parametrize()
def test_api_conforms_to_its_schema(case, world):
    if not case.meta.is_negative_at(ParameterLocation.PATH):
        real = world.path_ids(case.method.upper(), case.path)
        case.path_parameters = {
            name: real.get(name, value) for name, value in (case.path_parameters or {}).items()
        }
    response = case.call_and_validate(
        base_url=world.base_url, session=world.http, headers=world.headers
    )
    CASES_BY_OPERATION[case.operation.label] += 1
    STATUSES[response.status_code] += 1
