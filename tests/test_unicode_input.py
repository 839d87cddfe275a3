"""Text that is not valid Unicode (a lone surrogate such as ``"x\\ud800"``, which JSON can
carry as an escape but no database, SDK or log can) is refused at the parse step: a 400 in
the error shape of the API that was called, before any work is done — in every text field of
every endpoint, including ``email`` on login and the OpenAI ``user`` field (which used to be
served and its reservation never released)."""

import json
from collections.abc import Iterator

import pytest

from llm.models import Message
from tests.llm.factories import ConversationFactory

LONE = "x\ud800"


def variants(body: object, path: str = "") -> Iterator[tuple[str, object]]:
    """``body`` once per string in it (values and keys, however deep), with that string
    replaced by a lone surrogate; named by where it sits."""
    if isinstance(body, str):
        yield path or "(body)", LONE
    elif isinstance(body, list):
        for index, item in enumerate(body):
            for where, changed in variants(item, f"{path}[{index}]"):
                yield where, [*body[:index], changed, *body[index + 1 :]]
    elif isinstance(body, dict):
        for key, value in body.items():
            for where, changed in variants(value, f"{path}.{key}"):
                yield where, {**body, key: changed}
        yield f"{path}{{key}}", {**body, LONE: "value"}


def encoded(body: object) -> bytes:
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \ud800
    assert b"\\ud800" in raw
    return raw


# --- /api/: the one error shape ---------------------------------------------------------------

API_BODIES = {
    ("POST", "/api/v1/auth/register/"): {"email": "a@example.com", "password": "pw", "name": "A"},
    ("POST", "/api/v1/auth/token/"): {"email": "a@example.com", "password": "pw"},
    ("POST", "/api/v1/auth/token/refresh/"): {"refresh": "token"},
    ("POST", "/api/v1/auth/token/verify/"): {"token": "token"},
    ("POST", "/api/v1/auth/logout/"): {"refresh": "token"},
    ("PATCH", "/api/v1/auth/me/"): {"name": "A"},
    ("POST", "/api/v1/auth/password/"): {"old_password": "a", "new_password": "b"},
    ("POST", "/api/v1/auth/api-keys/"): {"name": "laptop"},
    ("POST", "/api/v1/conversations/"): {
        "title": "t",
        "model": "m",
        "system_prompt": "s",
        "params": {"stop": ["a"]},
    },
    ("PATCH", "/api/v1/conversations/{conversation}/"): {"title": "t", "system_prompt": "s"},
    ("POST", "/api/v1/conversations/{conversation}/messages/"): {"content": "hello"},
    ("POST", "/api/v1/conversations/{conversation}/messages/{message}/edit/"): {"content": "hi"},
    ("POST", "/api/v1/conversations/{conversation}/messages/{message}/regenerate/"): {},
}
API_CASES = [
    (method, url, where, body)
    for (method, url), base in API_BODIES.items()
    for where, body in variants(base)
]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url", "where", "body"), API_CASES)
def test_api_refuses_a_lone_surrogate_in_any_field(auth_client, user, method, url, where, body):
    conversation = ConversationFactory(owner=user)
    message = Message.objects.create(
        conversation=conversation, role="user", content="hi", position=1
    )
    url = url.format(conversation=conversation.pk, message=message.pk)
    response = auth_client.generic(method, url, encoded(body), content_type="application/json")
    assert response.status_code == 400, (where, response.content)
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "parse_error")
    assert "not valid Unicode" in error["message"]


@pytest.mark.django_db
def test_login_with_a_surrogate_email_is_a_400_not_a_500(api_client):
    response = api_client.post(
        "/api/v1/auth/token/",
        encoded({"email": LONE + "@example.com", "password": "x"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.django_db
def test_a_valid_surrogate_pair_is_text_and_accepted(auth_client):
    """An escaped pair (an emoji) is valid Unicode: only lone surrogates are refused."""
    response = auth_client.patch(
        "/api/v1/auth/me/", b'{"name": "Ann \\ud83d\\ude00"}', content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Ann \U0001f600"
