"""Staff manage accounts in the admin through the same services as the API: deactivating
revokes keys and ends sessions, a password set by staff ends sessions, keys are revoked, never
edited or deleted. Driven through Django's test client as a staff user."""

import pytest
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from conftest import PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def signed_in(api_client, user):
    """``user`` with a refresh token (from the login endpoint) and an API key."""
    tokens = api_client.post(
        "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}
    ).json()
    return {"refresh": tokens["refresh"], "key": api_key_create(owner=user, name="ci").secret}


def refresh_status(api_client, refresh):
    api_client.credentials()
    return api_client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}).status_code


def key_status(api_client, key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    status = api_client.get("/api/v1/auth/me/").status_code
    api_client.credentials()
    return status


def change_form_data(user: User, **changes) -> dict:
    data = {
        "email": user.email,
        "name": user.name,
        "is_active": "on" if user.is_active else "",
        "date_joined_0": timezone.localtime(user.date_joined).strftime("%Y-%m-%d"),
        "date_joined_1": timezone.localtime(user.date_joined).strftime("%H:%M:%S"),
        **changes,
    }
    return {k: v for k, v in data.items() if v != ""}


class TestDeactivation:
    def test_unticking_active_revokes_keys_and_ends_sessions(
        self, staff, api_client, user, signed_in
    ):
        assert key_status(api_client, signed_in["key"]) == 200
        response = staff.post(
            f"/admin/accounts/user/{user.pk}/change/",
            change_form_data(user, is_active="", name="Renamed"),
            follow=True,
        )
        assert response.status_code == 200
        assert "1 API key(s) revoked" in response.content.decode()
        user.refresh_from_db()
        assert not user.is_active and user.name == "Renamed"
        assert ApiKey.objects.get(owner=user).revoked_at is not None
        assert key_status(api_client, signed_in["key"]) == 401
        assert refresh_status(api_client, signed_in["refresh"]) == 401

        # Reactivating lets the person sign in again, but brings no old credential back.
        staff.post(
            f"/admin/accounts/user/{user.pk}/change/", change_form_data(user, is_active="on")
        )
        user.refresh_from_db()
        assert user.is_active
        assert key_status(api_client, signed_in["key"]) == 401
        assert refresh_status(api_client, signed_in["refresh"]) == 401
        login = api_client.post("/api/v1/auth/token/", {"email": user.email, "password": PASSWORD})
        assert login.status_code == 200

    def test_deactivate_action(self, staff, api_client, user, other_user, signed_in):
        response = staff.post(
            "/admin/accounts/user/",
            {"action": "deactivate", "_selected_action": [user.pk]},
        )
        assert response.status_code == 302
        user.refresh_from_db()
        other_user.refresh_from_db()
        assert not user.is_active and other_user.is_active
        assert key_status(api_client, signed_in["key"]) == 401
        assert refresh_status(api_client, signed_in["refresh"]) == 401

        staff.post("/admin/accounts/user/", {"action": "activate", "_selected_action": [user.pk]})
        user.refresh_from_db()
        assert user.is_active

    def test_editing_other_fields_leaves_credentials_alone(
        self, staff, api_client, user, signed_in
    ):
        staff.post(
            f"/admin/accounts/user/{user.pk}/change/",
            change_form_data(user, name="Ada"),
        )
        user.refresh_from_db()
        assert user.name == "Ada"
        assert key_status(api_client, signed_in["key"]) == 200
        assert refresh_status(api_client, signed_in["refresh"]) == 200

    def test_users_are_deactivated_not_deleted(self, staff, user):
        assert staff.get(f"/admin/accounts/user/{user.pk}/delete/").status_code == 403
        response = staff.post(
            "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [user.pk]}
        )
        assert User.objects.filter(pk=user.pk).exists()
        assert response.status_code in (200, 302)


class TestPasswordSetByStaff:
    def test_ends_every_session_and_the_new_password_works(
        self, staff, api_client, user, signed_in
    ):
        response = staff.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        assert response.status_code == 302, response.content.decode()[:3000]
        assert refresh_status(api_client, signed_in["refresh"]) == 401
        assert key_status(api_client, signed_in["key"]) == 200  # keys are not sessions
        assert (
            api_client.post(
                "/api/v1/auth/token/", {"email": user.email, "password": NEW_PASSWORD}
            ).status_code
            == 200
        )

    def test_a_weak_password_is_refused(self, staff, user):
        response = staff.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"usable_password": "true", "password1": "123", "password2": "123"},
        )
        assert response.status_code == 200  # the form again
        user.refresh_from_db()
        assert user.check_password(PASSWORD)

    def test_disabling_password_sign_in_ends_sessions(self, staff, api_client, user, signed_in):
        staff.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"usable_password": "false", "unset-password": "1"},
        )
        user.refresh_from_db()
        assert not user.has_usable_password()
        assert refresh_status(api_client, signed_in["refresh"]) == 401


class TestAddUser:
    def test_creates_through_the_service_with_its_rules(self, staff, api_client):
        response = staff.post(
            "/admin/accounts/user/add/",
            {
                "email": "Staff.Made@Example.com",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        )
        assert response.status_code == 302
        created = User.objects.get(email="staff.made@example.com")
        assert response["Location"].endswith(f"/admin/accounts/user/{created.pk}/change/")
        assert created.is_active and not created.is_staff

    def test_weak_password_is_refused(self, staff):
        response = staff.post(
            "/admin/accounts/user/add/",
            {"email": "weak@example.com", "password1": "123", "password2": "123"},
        )
        assert response.status_code == 200
        assert not User.objects.filter(email="weak@example.com").exists()


class TestApiKeys:
    def test_keys_are_read_only_and_never_deleted(self, staff, user):
        issued = api_key_create(owner=user, name="ci")
        url = f"/admin/accounts/apikey/{issued.api_key.pk}/change/"
        page = staff.get(url)
        assert page.status_code == 200  # staff can look
        assert 'name="name"' not in page.content.decode()  # nothing to edit
        assert staff.post(url, {"name": "renamed"}).status_code == 403
        assert staff.get(f"/admin/accounts/apikey/{issued.api_key.pk}/delete/").status_code == 403
        issued.api_key.refresh_from_db()
        assert issued.api_key.name == "ci" and issued.api_key.revoked_at is None

    def test_revoke_action_goes_through_the_service(self, staff, api_client, user):
        keep, revoke = api_key_create(owner=user, name="keep"), api_key_create(owner=user, name="x")
        response = staff.post(
            "/admin/accounts/apikey/",
            {"action": "revoke", "_selected_action": [revoke.api_key.pk]},
        )
        assert response.status_code == 302
        assert key_status(api_client, revoke.secret) == 401
        assert key_status(api_client, keep.secret) == 200

    def test_staff_without_the_change_permission_cannot_revoke(self, client, user):
        from django.contrib.auth.models import Permission

        viewer = User.objects.create_user(email="viewer@example.com", password=PASSWORD)
        viewer.is_staff = True
        viewer.save()
        viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
        issued = api_key_create(owner=user, name="ci")
        client.force_login(viewer)
        assert client.get("/admin/accounts/apikey/").status_code == 200
        client.post(
            "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]}
        )
        issued.api_key.refresh_from_db()
        assert issued.api_key.revoked_at is None
