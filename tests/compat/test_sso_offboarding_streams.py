"""Offboarding by the identity provider ends access now: ``user_access_end`` (what a refused
single sign-on calls) ends the person's open stream, over real HTTP with the real SDK."""

import openai
import pytest

from accounts.services import user_access_end
from tests.compat.conftest import faulty_model

pytestmark = pytest.mark.django_db(transaction=True)


def test_access_ended_by_sso_offboarding_ends_the_open_stream(openai_client, user, catalog):
    slow = faulty_model("anthropic", "tps10-len600")  # a minute of text unless interrupted
    stream = openai_client.chat.completions.create(
        model=slow.slug, messages=[{"role": "user", "content": "A long story"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 3:
                user_access_end(user=user)
    assert caught.value.body["code"] == "access_revoked"
    assert len(received) < 100  # ended early, not at the reply's end
