"""The audit log answers "who did this, when, from where": security events and staff changes
recorded through the real API, admin and commands, append-only down to the database, read in
the admin, exported as JSON lines and pruned by age."""

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from audit.models import AuditEvent, AuditLogAppendOnly
from audit.services import audit_record
from budgets.models import Budget
from budgets.services import budget_set
from conftest import PASSWORD
from project.money import micros
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db
ADDRESS = "198.51.100.7"


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


class TestSecurityEvents:
    def test_failed_and_successful_sign_ins_say_who_from_where(self, api_client, user):
        api_client.post(
            "/api/v1/auth/token/",
            {"email": user.email, "password": "wrong-password"},
            REMOTE_ADDR=ADDRESS,
            HTTP_X_REQUEST_ID="req-failed-1",
        )
        api_client.post(
            "/api/v1/auth/token/",
            {"email": "nobody@example.com", "password": "whatever"},
            REMOTE_ADDR=ADDRESS,
        )
        ok = api_client.post(
            "/api/v1/auth/token/",
            {"email": user.email, "password": PASSWORD},
            REMOTE_ADDR=ADDRESS,
            HTTP_X_REQUEST_ID="req-ok-1",
        )
        assert ok.status_code == 200

        failed = events("auth.sign_in_failed")
        assert [e.data["email"] for e in failed] == [user.email, "nobody@example.com"]
        assert failed[0].ip == ADDRESS and failed[0].request_id == "req-failed-1"
        assert failed[0].actor_id is None
        assert "wrong-password" not in json.dumps([e.data for e in failed])
        [signed_in] = events("auth.sign_in")
        assert (signed_in.actor_id, signed_in.request_id) == (user.pk, "req-ok-1")
        assert signed_in.data == {"method": "jwt"} and signed_in.ip == ADDRESS

    def test_a_forged_forwarded_for_does_not_choose_the_address(self, api_client, user):
        api_client.post(
            "/api/v1/auth/token/",
            {"email": user.email, "password": "wrong-password"},
            REMOTE_ADDR=ADDRESS,
            HTTP_X_FORWARDED_FOR="10.9.9.9",
        )
        assert events("auth.sign_in_failed")[0].ip == ADDRESS

    def test_admin_sign_in_is_recorded(self, client, staff_user):
        response = client.post(
            "/admin/login/?next=/admin/",
            {"username": staff_user.email, "password": PASSWORD},
            REMOTE_ADDR=ADDRESS,
        )
        assert response.status_code == 302
        [event] = events("auth.sign_in")
        assert (event.actor_id, event.actor_is_staff, event.ip) == (staff_user.pk, True, ADDRESS)
        assert event.data == {"method": "session"}

    def test_key_creation_and_revocation_through_the_api(self, auth_client, user):
        created = auth_client.post(
            "/api/v1/auth/api-keys/", {"name": "laptop"}, HTTP_X_REQUEST_ID="req-key-1"
        )
        assert created.status_code == 201
        secret = created.json()["key"]
        auth_client.delete(f"/api/v1/auth/api-keys/{created.json()['id']}/")

        [issued] = events("api_key.created")
        assert (issued.actor_id, issued.request_id) == (user.pk, "req-key-1")
        assert issued.data["name"] == "laptop" and issued.data["owner_id"] == user.pk
        [revoked] = events("api_key.revoked")
        assert revoked.target_id == str(created.json()["id"])
        assert revoked.changes["revoked_at"][0] is None and revoked.changes["revoked_at"][1]
        everything = json.dumps(list(AuditEvent.objects.values()), default=str)
        everything += json.dumps(list(LogEntry.objects.values()), default=str)
        assert secret not in everything
        assert ApiKey.objects.get().key_hash not in everything

    def test_staff_deactivating_a_user_is_recorded_with_the_keys_it_revoked(
        self, staff, staff_user, user
    ):
        key = api_key_create(owner=user, name="ci").api_key
        response = staff.post(
            "/admin/accounts/user/",
            {"action": "deactivate", "_selected_action": [user.pk]},
            REMOTE_ADDR=ADDRESS,
        )
        assert response.status_code == 302
        [event] = events("user.deactivated")
        assert (event.actor_id, event.actor_email) == (staff_user.pk, staff_user.email)
        assert event.target_id == str(user.pk)
        assert event.changes == {"is_active": [True, False]}
        assert event.data["api_keys_revoked"] == [key.pk]
        assert event.ip == ADDRESS and event.source == "request" and event.request_id


class TestStaffChanges:
    def test_a_budget_raised_in_the_admin_records_before_and_after(self, staff, staff_user, user):
        budget = budget_set(user=user, period="monthly", limit_micros=micros("5"))
        response = staff.post(
            f"/admin/budgets/budget/{budget.pk}/change/",
            {
                "user": user.pk,
                "period": "monthly",
                "limit_usd": "50.00",
                "limit_tokens": "",
                "ledgers-TOTAL_FORMS": "0",
                "ledgers-INITIAL_FORMS": "0",
            },
            REMOTE_ADDR=ADDRESS,
            HTTP_X_REQUEST_ID="req-budget-1",
        )
        assert response.status_code == 302, response.content[:2000]
        entry = LogEntry.objects.get_for_object(budget).filter(action=LogEntry.Action.UPDATE).get()
        assert entry.actor_id == staff_user.pk
        assert entry.remote_addr == ADDRESS and entry.cid == "req-budget-1"
        before, after = entry.changes["limit_micros"]  # stored in micro-dollars
        assert (int(before), int(after)) == (5_000_000, 50_000_000)

    def test_a_catalog_price_change_is_recorded(self, staff, staff_user):
        model = StandinModelFactory(input_price_per_mtok=Decimal("1"))
        response = staff.post(
            "/admin/llm/llmmodel/",
            {
                "form-TOTAL_FORMS": "1",
                "form-INITIAL_FORMS": "1",
                "form-0-id": model.pk,
                "form-0-enabled": "on" if model.enabled else "",
                "form-0-input_price_per_mtok": "9.0000",
                "form-0-output_price_per_mtok": str(model.output_price_per_mtok),
                "_save": "Save",
            },
        )
        assert response.status_code == 302, response.context["cl"].formset.errors
        entry = LogEntry.objects.get_for_object(model).latest("timestamp")
        assert entry.actor_id == staff_user.pk
        assert Decimal(entry.changes["input_price_per_mtok"][1]) == 9

    def test_disabling_models_by_the_bulk_action_is_recorded(self, staff, staff_user):
        model = StandinModelFactory(enabled=True)
        response = staff.post(
            "/admin/llm/llmmodel/", {"action": "disable", "_selected_action": [model.pk]}
        )
        assert response.status_code == 302
        [event] = events("llm_model.disabled")
        assert (event.actor_id, event.target_id) == (staff_user.pk, str(model.pk))
        assert event.changes == {"enabled": [True, False]}


class TestAppendOnly:
    def test_events_cannot_be_changed_or_deleted_from_python(self):
        event = audit_record(action="test.thing", data={"n": 1})
        event.action = "test.other"
        with pytest.raises(AuditLogAppendOnly):
            event.save()
        with pytest.raises(AuditLogAppendOnly):
            event.delete()
        with pytest.raises(AuditLogAppendOnly):
            AuditEvent.objects.filter(pk=event.pk).update(action="x")
        with pytest.raises(AuditLogAppendOnly):
            AuditEvent.objects.all().delete()
        assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"

    def test_the_database_refuses_an_update_behind_the_orm(self, user):
        event = audit_record(action="test.thing")
        budget_set(user=user, period="daily", limit_tokens=1000)  # a tracked change
        [entry] = LogEntry.objects.get_for_model(Budget)
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audit_auditevent SET action = 'forged' WHERE id = %s", [event.pk]
            )
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE auditlog_logentry SET object_repr = 'forged' WHERE id = %s", [entry.pk]
            )
        assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"
        assert LogEntry.objects.get(pk=entry.pk).object_repr != "forged"

    @pytest.mark.skipif("connection.vendor != 'postgresql'")
    def test_postgresql_refuses_a_delete_behind_the_orm(self):
        event = audit_record(action="test.thing")
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
        assert AuditEvent.objects.filter(pk=event.pk).exists()

    def test_the_admin_is_read_only(self, staff):
        event = audit_record(action="test.thing", target_repr="x")
        changelist = staff.get("/admin/audit/auditevent/?action=test.thing")
        assert changelist.status_code == 200 and b"test.thing" in changelist.content
        detail = staff.get(f"/admin/audit/auditevent/{event.pk}/change/")
        assert detail.status_code == 200 and b'name="_save"' not in detail.content
        assert staff.post(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
        assert staff.get("/admin/audit/auditevent/add/").status_code == 403
        assert AuditEvent.objects.filter(pk=event.pk).exists()


class TestExportAndPrune:
    def test_export_writes_events_and_changes_as_json_lines_oldest_first(self, user):
        audit_record(action="test.first")
        budget_set(user=user, period="daily", limit_tokens=1000)
        out = StringIO()
        call_command("audit_export", stdout=out, stderr=StringIO())
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        kinds = [(line["kind"], line["action"]) for line in lines]
        assert ("event", "test.first") in kinds
        assert ("change", "budgets.budget.created") in kinds
        assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)

    def test_the_admin_exports_selected_events(self, staff):
        event = audit_record(action="test.exported", data={"why": "audit"})
        response = staff.post(
            "/admin/audit/auditevent/",
            {"action": "export_jsonl", "_selected_action": [event.pk]},
        )
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-ndjson"
        [line] = [json.loads(x) for x in response.content.decode().splitlines()]
        assert (line["action"], line["data"]) == ("test.exported", {"why": "audit"})

    def test_prune_deletes_only_what_is_older(self, user):
        old = AuditEvent.objects.create(
            action="test.old", created_at=timezone.now() - timedelta(days=400)
        )
        recent = audit_record(action="test.recent")
        budget_set(user=user, period="daily", limit_tokens=1000)
        out = StringIO()
        call_command("audit_prune", "--older-than", "365", stdout=out)
        assert "Deleted 1 audit event(s)" in out.getvalue()
        assert not AuditEvent.objects.filter(pk=old.pk).exists()
        assert AuditEvent.objects.filter(pk=recent.pk).exists()
        assert LogEntry.objects.get_for_model(Budget).exists()
