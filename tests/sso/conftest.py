import pytest

from sso.discovery import provider_metadata_forget
from tests.sso.provider import CLIENT_ID, CLIENT_SECRET, oidc_provider

# People the provider knows: login → claims.
PEOPLE = {
    "ada": {"email": "ada@acme.example", "name": "Ada Lovelace", "groups": ["parley", "data"]},
    "bob": {"email": "bob@acme.example", "name": "Bob Builder", "groups": ["parley"]},
    "eve": {"email": "eve@elsewhere.example", "name": "Eve", "groups": ["parley"]},
    "mal": {"email": "mal@acme.example", "name": "Mallory", "groups": ["contractors"]},
}


@pytest.fixture(scope="session")
def oidc_provider_server(live_server):
    with oidc_provider(redirect_uri=f"{live_server.url}/sso/callback/", users=PEOPLE) as provider:
        yield provider


@pytest.fixture
def sso(oidc_provider_server, settings, transactional_db):
    """Parley configured for the running provider, as the README's Configuration says; the
    provider back to its people and to well-behaved tokens."""
    provider = oidc_provider_server
    provider.set_users(PEOPLE)
    provider.misbehave(None)
    provider.hold(None)
    provider_metadata_forget()
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_ALLOWED_EMAIL_DOMAINS = ["acme.example"]
    settings.OIDC_ALLOWED_GROUPS = ["parley"]
    settings.OIDC_GROUP_TEAMS = {"data": "data:admin", "parley": "everyone"}
    yield provider
    provider_metadata_forget()
