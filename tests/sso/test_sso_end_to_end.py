"""Single sign-on end to end: Parley under a live server, node's oidc-provider as the identity
provider, a person going through its real login and consent pages (httpx following redirects
and submitting the forms)."""

import threading
import time

import httpx
import pytest

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from audit.models import AuditEvent
from tests.sso.provider import person_client, sign_in_through_provider

pytestmark = pytest.mark.django_db(transaction=True)


def test_discovery_gives_the_endpoints_and_the_sign_in_goes_there_with_pkce(sso, live_server):
    client = httpx.Client(follow_redirects=False)
    response = client.get(f"{live_server.url}/sso/login/")
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    discovered = httpx.get(f"{sso.issuer}/.well-known/openid-configuration").json()
    assert str(location).split("?")[0] == discovered["authorization_endpoint"]
    params = dict(location.params)
    assert params["response_type"] == "code"
    assert params["client_id"] == "parley"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["nonce"] and params["state"]
    assert "groups" in params["scope"].split()


def test_first_sign_in_creates_the_account_and_signs_in(sso, live_server):
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login="ada")
        assert page.status_code == 200, page.text[:500]
        assert str(page.url) == f"{live_server.url}/account/"
        assert "ada@acme.example" in page.text
    user = User.objects.get(email="ada@acme.example")
    assert user.name == "Ada Lovelace"
    assert not user.has_usable_password()  # they sign in through the provider
    recorded = AuditEvent.objects.filter(target_id=str(user.pk)).values_list("action", "data")
    assert ("user.created", {"via": "oidc"}) in list(recorded)
    assert ("auth.sign_in", {"method": "oidc"}) in list(recorded)


def test_the_admin_accepts_a_staff_member_signing_in_through_the_provider(sso, live_server):
    User.objects.create_user("bob@acme.example", is_staff=True, is_superuser=True)
    with person_client(sso) as client:
        login_page = client.get(f"{live_server.url}/admin/login/?next=/admin/")
        assert "Sign in with" in login_page.text
        page = sign_in_through_provider(client, live_server.url, login="bob", next_path="/admin/")
        assert str(page.url) == f"{live_server.url}/admin/"
        assert "Site administration" in page.text


def test_the_provider_rotating_its_signing_key_does_not_stop_sign_in(sso, live_server):
    with person_client(sso) as client:
        assert sign_in_through_provider(client, live_server.url, login="ada").status_code == 200
    before = sso.published_kids()
    # A new key signs from now on; the old one is still published, then retired.
    kids = sso.rotate_keys(retire_previous=False)
    assert kids[0] not in before and kids[1:] == before
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login="ada")
        assert str(page.url) == f"{live_server.url}/account/", page.text[:500]
    kids = sso.rotate_keys(retire_previous=True)
    assert sso.published_kids() == kids and len(kids) == 1
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login="ada")
        assert str(page.url) == f"{live_server.url}/account/", page.text[:500]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("wrong_issuer", "issued by another issuer"),
        ("wrong_audience", "issued for another application"),
        ("wrong_nonce", "does not belong to this sign-in"),
        ("expired", "has expired"),
        ("unknown_key", "signed with a key the identity provider does not publish"),
    ],
)
def test_an_id_token_that_fails_a_check_is_refused_with_a_clear_message(
    sso, live_server, mode, message
):
    sso.misbehave(mode)
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login="ada")
        assert page.status_code == 403
        assert "Sign-in refused" in page.text and message in page.text
        assert "sessionid" not in client.cookies
        assert "/account/login/" in str(client.get(f"{live_server.url}/account/").url)
    assert not User.objects.filter(email="ada@acme.example").exists()
    failure = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert failure.data["method"] == "oidc" and failure.data["reason"].startswith("id_token_")


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ("eve", "Email addresses at elsewhere.example may not sign in"),
        ("mal", "not list you in a group allowed"),
    ],
)
def test_people_outside_the_allowed_domains_or_groups_are_refused(sso, live_server, login, message):
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login=login)
        assert page.status_code == 403 and message in page.text
        assert "sessionid" not in client.cookies
    assert not User.objects.filter(email__startswith=f"{login}@").exists()


def test_someone_dropped_from_the_allowed_group_is_refused_and_loses_sessions_and_keys(
    sso, live_server
):
    with person_client(sso) as browser:
        assert sign_in_through_provider(browser, live_server.url, login="bob").status_code == 200
        user = User.objects.get(email="bob@acme.example")
        issued = api_key_create(owner=user, name="laptop")
        models = httpx.get(
            f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {issued.secret}"}
        )
        assert models.status_code == 200

        # The identity provider takes Bob out of the "parley" group.
        sso.set_users({"bob": {"email": "bob@acme.example", "groups": ["alumni"]}})
        with person_client(sso) as elsewhere:
            page = sign_in_through_provider(elsewhere, live_server.url, login="bob")
            assert page.status_code == 403 and "not list you in a group allowed" in page.text

        # The browser signed in before is signed out, and the key no longer works.
        assert "/account/login/" in str(browser.get(f"{live_server.url}/account/").url)
    models = httpx.get(
        f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {issued.secret}"}
    )
    assert models.status_code == 401
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
    ended = AuditEvent.objects.get(action="user.access_ended")
    assert ended.target_id == str(user.pk) and ended.data["api_keys_revoked"] == [issued.api_key.pk]
    refusal = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert refusal.data == {
        "email": "bob@acme.example",
        "method": "oidc",
        "reason": "sso_group_not_allowed",
    }


def test_a_person_deactivated_by_staff_is_refused_by_single_sign_on(sso, live_server):
    User.objects.create_user("ada@acme.example", is_active=False)
    with person_client(sso) as client:
        page = sign_in_through_provider(client, live_server.url, login="ada")
        assert page.status_code == 403 and "deactivated" in page.text


def test_a_discovery_document_naming_another_issuer_is_refused(sso, live_server, settings):
    settings.OIDC_ISSUER = sso.issuer + "/"  # the document says it without the slash
    page = httpx.get(f"{live_server.url}/sso/login/")
    assert page.status_code == 403 and "names another issuer" in page.text


def test_groups_set_team_memberships_at_every_sign_in(sso, live_server):
    from teams.models import Membership
    from teams.services import membership_add, team_create

    data = team_create(name="Data", slug="data")
    everyone = team_create(name="Everyone", slug="everyone")
    hand_made = team_create(name="Reading group", slug="reading")  # not in OIDC_GROUP_TEAMS

    with person_client(sso) as client:
        assert sign_in_through_provider(client, live_server.url, login="ada").status_code == 200
    ada = User.objects.get(email="ada@acme.example")
    membership_add(team=hand_made, user=ada)
    roles = dict(Membership.objects.filter(user=ada).values_list("team__slug", "role"))
    assert roles == {"data": "admin", "everyone": "member", "reading": "member"}

    # The provider drops Ada from "data": at her next sign-in she leaves that team only.
    sso.set_users({"ada": {"email": "ada@acme.example", "groups": ["parley"]}})
    with person_client(sso) as client:
        assert sign_in_through_provider(client, live_server.url, login="ada").status_code == 200
    roles = dict(Membership.objects.filter(user=ada).values_list("team__slug", "role"))
    assert roles == {"everyone": "member", "reading": "member"}
    assert data.memberships.count() == 0 and everyone.memberships.count() == 1


def test_a_callback_this_browser_did_not_start_is_refused(sso, live_server):
    with person_client(sso) as stranger:
        page = stranger.get(f"{live_server.url}/sso/callback/?code=stolen&state=guessed")
        assert page.status_code == 403
        assert "started in another browser" in page.text
        assert "sessionid" not in stranger.cookies


@pytest.mark.parametrize("endpoint", ["token_endpoint", "jwks_uri", "userinfo_endpoint"])
def test_sign_ins_waiting_on_the_provider_hold_no_database_connection(
    sso, live_server, settings, endpoint
):
    """More people signing in at once than the connection pool holds, while the identity
    provider takes its time over the token exchange, its keys or userinfo: every sign-in gets
    as far as the provider, the site still reaches its database meanwhile, and everyone ends
    up signed in."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {})
    people = pool.get("max_size", 10) + 2
    settings.OIDC_TIMEOUT = 60  # the first held request must outlast gathering the others
    sso.set_users(
        {
            f"p{n}": {"email": f"p{n}@acme.example", "name": f"P {n}", "groups": ["parley"]}
            for n in range(people)
        }
    )
    discovered = httpx.get(f"{sso.issuer}/.well-known/openid-configuration").json()
    sso.hold(httpx.URL(discovered[endpoint]).path)
    pages, errors = {}, []

    def sign_in(login: str) -> None:
        try:
            with person_client(sso) as client:
                client.timeout = httpx.Timeout(90)  # its callback waits while held
                pages[login] = sign_in_through_provider(client, live_server.url, login=login)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sign_in, args=(f"p{n}",)) for n in range(people)]
    try:
        for thread in threads:
            thread.start()
        # Each sign-in's callback is now on its way to the held endpoint; one holding a
        # connection while it waits would leave the rest queued for the pool, short of it.
        deadline = time.monotonic() + 60
        while (waiting := sso.held()) < people and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting == people, f"{waiting} of {people} reached the provider; {errors}"
        ready = httpx.get(f"{live_server.url}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text  # a database query, answered meanwhile
    finally:
        sso.hold(None)
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert {str(page.url) for page in pages.values()} == {f"{live_server.url}/account/"}
    assert User.objects.filter(email__endswith="@acme.example").count() == people
