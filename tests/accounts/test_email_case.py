"""An email is one login whatever its letter case: through the API and the admin."""

import pytest

from accounts.models import User
from conftest import PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-long-unusual-passphrase"


def login(client, email, password=PASSWORD):
    return client.post("/api/v1/auth/token/", {"email": email, "password": password})


class TestLogin:
    def test_registered_email_logs_in_in_any_case(self, api_client):
        registered = api_client.post(
            "/api/v1/auth/register/",
            {"email": "Ada.Lovelace@Example.com", "password": NEW_PASSWORD},
        )
        assert registered.status_code == 201
        for variant in (
            "ada.lovelace@example.com",
            "ADA.LOVELACE@EXAMPLE.COM",
            "Ada.Lovelace@example.COM",
        ):
            response = login(api_client, variant, NEW_PASSWORD)
            assert response.status_code == 200, (variant, response.content)

    def test_a_row_stored_in_mixed_case_still_logs_in(self, api_client, user):
        # Rows written before emails were normalised everywhere.
        User.objects.filter(pk=user.pk).update(email="Old.Style@Example.com")
        assert login(api_client, "old.style@example.com").status_code == 200
        assert login(api_client, "OLD.STYLE@EXAMPLE.COM").status_code == 200

    def test_wrong_password_in_another_case_is_still_refused(self, api_client, user):
        assert login(api_client, user.email.upper(), "wrong-password").status_code == 401


class TestAdminAddUser:
    def add(self, client, email, password=NEW_PASSWORD):
        return client.post(
            "/admin/accounts/user/add/",
            {"email": email, "password1": password, "password2": password},
        )

    def test_email_is_stored_lower_case_and_logs_in(self, client, staff_user, api_client):
        client.force_login(staff_user)
        response = self.add(client, "New.Person@Example.COM")
        assert response.status_code == 302, response.content.decode()[:2000]
        created = User.objects.get(email="new.person@example.com")
        assert created.check_password(NEW_PASSWORD)
        assert login(api_client, "NEW.PERSON@example.com", NEW_PASSWORD).status_code == 200

    def test_a_case_variant_of_an_existing_email_is_refused(self, client, staff_user, user):
        client.force_login(staff_user)
        response = self.add(client, user.email.upper())
        assert response.status_code == 200  # the form again, with the error
        assert "An account with this email already exists." in response.content.decode()
        assert User.objects.with_email(user.email).count() == 1

    def test_changing_an_email_to_a_case_variant_of_anothers_is_refused(
        self, client, staff_user, user, other_user
    ):
        client.force_login(staff_user)
        page = client.get(f"/admin/accounts/user/{other_user.pk}/change/")
        assert page.status_code == 200
        response = client.post(
            f"/admin/accounts/user/{other_user.pk}/change/",
            {
                "email": user.email.upper(),
                "name": other_user.name,
                "is_active": "on",
                "date_joined_0": "2026-01-01",
                "date_joined_1": "00:00:00",
            },
        )
        assert response.status_code == 200
        assert "An account with this email already exists." in response.content.decode()
        other_user.refresh_from_db()
        assert other_user.email != user.email.upper()
