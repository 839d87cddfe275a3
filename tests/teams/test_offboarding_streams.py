"""Removing a member ends, at once, the open stream of their key scoped to the team (over real
HTTP with the OpenAI SDK, against a reply that would otherwise go on for a minute); a team
service key's stream, owned by the team, goes on."""

import itertools

import openai
import pytest

from teams.models import Membership
from teams.services import membership_remove, team_api_key_create
from tests.accounts.factories import UserFactory
from tests.live import asgi_server
from tests.llm.factories import StandinModelFactory
from tests.teams.factories import make_team

PROMPT = [{"role": "user", "content": "Tell me a long story"}]
SLOW = "tps10-len600"  # a minute of text: only revocation ends it early


@pytest.mark.django_db(transaction=True)
def test_removing_a_member_ends_their_team_keys_stream_not_the_teams(standin):
    admin, leaver = UserFactory(), UserFactory()
    team = make_team(admins=[admin], members=[leaver])
    model = StandinModelFactory(slug="slow-team", provider_model=f"standin-{SLOW}")
    personal = team_api_key_create(team=team, created_by=leaver, name="laptop", service=False)
    service = team_api_key_create(team=team, created_by=leaver, name="ci", service=True)
    with asgi_server() as base_url:
        clients = {
            name: openai.OpenAI(base_url=f"{base_url}/v1", api_key=issued.secret, max_retries=0)
            for name, issued in (("personal", personal), ("service", service))
        }
        streams = {
            name: client.chat.completions.create(model=model.slug, messages=PROMPT, stream=True)
            for name, client in clients.items()
        }
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in streams["personal"]:
                received.append(chunk)
                if len(received) == 3:
                    membership_remove(membership=Membership.objects.get(team=team, user=leaver))
        assert caught.value.body["code"] == "access_revoked"
        assert len(received) < 100  # ended early, not at the reply's end
        # The service key the leaver made is the team's: its stream is still being written.
        service_chunks = list(itertools.islice(streams["service"], len(received) + 5))
        assert len(service_chunks) == len(received) + 5
        streams["service"].close()
        for client in clients.values():
            client.close()
