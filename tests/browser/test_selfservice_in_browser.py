"""A person uses the self-service page in a real Chromium: signs in through a real OpenID
provider (node's oidc-provider, its own login and consent pages), reads their budgets, usage and
teams, creates an API key (shown once) and revokes it, adds a member to the team they administer,
signs out; someone from another email domain is refused; staff sign in to the admin the
same way. Screenshots of each step go to the
test's temporary folder (printed); copies are in docs/screenshots/."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts.models import ApiKey, User
from budgets.services import budget_set
from llm.models import Usage
from teams.models import Membership
from teams.services import membership_add, team_create
from tests.browser.conftest import LAUNCH_ARGS
from tests.llm.factories import StandinModelFactory
from tests.sso.conftest import oidc_provider_server, sso  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def people_and_spend() -> None:
    """Ada (admin of "data" through her groups) with a budget and a month of usage; Bob already
    in her team; Carol with an account but in no team."""
    ada = User.objects.create_user("ada@acme.example", name="Ada Lovelace")
    ada.set_unusable_password()
    ada.save()
    bob = User.objects.create_user("bob@acme.example")
    User.objects.create_user("carol@acme.example")
    data = team_create(name="Data", slug="data")
    team_create(name="Everyone", slug="everyone")
    membership_add(team=data, user=bob)
    budget_set(user=ada, period="monthly", limit_micros=50_000_000)
    model = StandinModelFactory(slug="standin-gpt")
    now = timezone.now()
    for days_ago, tokens in {0: 1_200, 3: 4_800, 9: 2_400}.items():
        Usage.objects.create(
            user=ada,
            model=model,
            input_tokens=tokens // 3,
            output_tokens=tokens - tokens // 3,
            cost_micros=tokens * 1000,
            created_at=now - timedelta(days=days_ago),
        )


def test_a_person_signs_in_with_sso_and_manages_keys_and_team(
    chromium,
    live_server,
    sso,  # noqa: F811  (the fixture imported above)
    tmp_path,
    settings,
):
    from playwright.sync_api import sync_playwright

    settings.OIDC_PROVIDER_NAME = "Acme ID"
    people_and_spend()
    print(f"\nscreenshots: {tmp_path}")

    def shot(page, name: str) -> None:
        page.screenshot(path=tmp_path / f"{name}.png", full_page=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
            page.set_default_timeout(15_000)

            page.goto(f"{live_server.url}/account/")
            assert "/account/login/" in page.url
            shot(page, "01-sign-in")
            page.click("#sso-sign-in")

            # The provider's own login page, then its consent page.
            page.wait_for_selector("input[name=login]")
            assert page.url.startswith(sso.issuer)
            page.fill("input[name=login]", "ada")
            page.fill("input[name=password]", "correct horse")
            shot(page, "02-provider-login")
            page.click("button[type=submit]")
            page.wait_for_selector("text=Authorize")
            shot(page, "03-provider-consent")
            page.click("button[type=submit]")

            page.wait_for_url(f"{live_server.url}/account/")
            assert page.locator("h1").inner_text() == "Ada Lovelace"
            assert "$50" in page.locator("#budgets").inner_text()
            assert "3 replies" in page.locator("#usage").inner_text()
            teams = page.locator("#teams").inner_text()
            assert "Data" in teams and "Team admin" in teams and "Everyone" in teams
            shot(page, "04-account")

            page.fill("#id_name", "notebook")
            page.click("#new-key-form button[type=submit]")
            secret = page.locator("#new-key-secret").inner_text().strip()
            assert secret.startswith("prl_")
            shot(page, "05-new-key-shown-once")
            page.goto(f"{live_server.url}/account/")
            assert secret not in page.content()
            with httpx.Client() as client:
                models = client.get(
                    f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}
                )
            assert models.status_code == 200

            prefix = secret.split("_")[1]
            page.click(f"tr[data-prefix='{prefix}'] button")
            assert page.locator(f"tr[data-prefix='{prefix}'] .state").inner_text() == "revoked"
            shot(page, "06-key-revoked")

            team = page.locator("#team-data")
            team.locator("input[name='data-email']").fill("carol@acme.example")
            team.locator("button:has-text('Add')").click()
            assert "carol@acme.example joined Data" in page.locator(".messages").inner_text()
            assert page.locator("#team-data tr[data-member='carol@acme.example']").count() == 1
            shot(page, "07-team-admin")

            page.click("text=Sign out")
            page.wait_for_url(f"{live_server.url}/account/login/")

            # Someone whose email domain is not allowed: the provider signs them in, Parley
            # refuses and says why.
            outsider = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
            outsider.goto(f"{live_server.url}/account/login/")
            outsider.click("#sso-sign-in")
            outsider.fill("input[name=login]", "eve")
            outsider.fill("input[name=password]", "whatever")
            outsider.click("button[type=submit]")
            outsider.wait_for_selector("text=Authorize")
            outsider.click("button[type=submit]")
            outsider.wait_for_selector("text=Sign-in refused")
            assert "elsewhere.example may not sign in" in outsider.locator(".error").inner_text()
            shot(outsider, "08-refused")
        finally:
            browser.close()

    with httpx.Client() as client:
        models = client.get(
            f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}
        )
    assert models.status_code == 401
    assert ApiKey.objects.get(prefix=prefix).revoked_at is not None
    assert Membership.objects.filter(team__slug="data", user__email="carol@acme.example").exists()
    assert not User.objects.filter(email="eve@elsewhere.example").exists()


def test_staff_sign_in_to_the_admin_through_the_provider(
    chromium,
    live_server,
    sso,  # noqa: F811  (the fixture imported above)
    tmp_path,
    settings,
):
    from playwright.sync_api import sync_playwright

    settings.OIDC_PROVIDER_NAME = "Acme ID"
    User.objects.create_user("bob@acme.example", is_staff=True, is_superuser=True)
    print(f"\nscreenshots: {tmp_path}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/admin/")
            page.screenshot(path=tmp_path / "09-admin-sign-in.png", full_page=True)
            page.click("#sso-sign-in")
            page.fill("input[name=login]", "bob")
            page.fill("input[name=password]", "correct horse")
            page.click("button[type=submit]")
            page.wait_for_selector("text=Authorize")
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")
            assert "Site administration" in page.content()
            page.screenshot(path=tmp_path / "10-admin-signed-in.png", full_page=True)
        finally:
            browser.close()
