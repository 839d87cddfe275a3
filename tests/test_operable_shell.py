"""The service's shell as a client and an operator meet it: errors, limits, throttles, probes,
request ids, logs, metrics, CORS, schema, admin."""

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from conftest import PASSWORD
from project import urls as project_urls

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@api_view(["GET"])
@permission_classes([AllowAny])
def crash(request):
    raise RuntimeError("database password is hunter2 and the key is sk-live-abcdefgh12345678")


urlpatterns = [path("api/v1/crash/", crash), *project_urls.urlpatterns]
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def error_of(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) == {"status", "code", "message", "details", "request_id"}
    assert body["error"]["status"] == status
    return body["error"]


class TestErrorShape:
    def test_unknown_api_url_is_404_json(self, api_client):
        assert error_of(api_client.get("/api/v1/nope/"), 404)["code"] == "not_found"

    def test_405(self, auth_client):
        assert error_of(auth_client.delete("/api/v1/auth/me/"), 405)["code"] == "method_not_allowed"

    def test_401(self, api_client):
        assert error_of(api_client.get("/api/v1/auth/me/"), 401)["code"] == "not_authenticated"

    def test_malformed_json_is_400(self, auth_client):
        response = auth_client.generic(
            "PATCH", "/api/v1/auth/me/", "{not json", content_type="application/json"
        )
        assert error_of(response, 400)["code"] == "parse_error"

    def test_body_too_large_is_413(self, auth_client, settings):
        settings.MAX_REQUEST_BODY_BYTES = 1024
        response = auth_client.patch("/api/v1/auth/me/", {"name": "x" * 2000})
        assert error_of(response, 413)["code"] == "request_too_large"

    @pytest.mark.parametrize(
        "url",
        [
            "/api/v1/nope/",
            "/api/v1/jobs/0.5/",
            "/api/v1/conversations/not-a-uuid/",
            "/api/v1/conversations/00000000-0000-0000-0000-000000000000/messages/x/stream/",
            "/api/nope",
        ],
    )
    def test_unknown_urls_and_malformed_ids_are_json_with_debug_on(
        self, auth_client, settings, url
    ):
        # Development settings run with DEBUG on, where Django's 404 page lists the URLconf.
        settings.DEBUG = True
        response = auth_client.get(url)
        error = error_of(response, 404)
        assert error["code"] == "not_found"
        assert error["request_id"] == response["X-Request-ID"]
        assert "urlpatterns" not in response.content.decode()

    def test_outside_the_api_debug_pages_stay(self, client, settings):
        settings.DEBUG = True
        response = client.get("/nope/")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")

    def test_a_bad_host_header_is_a_json_400(self, api_client):
        response = api_client.get("/api/v1/auth/me/", HTTP_HOST="evil.example.com")
        assert error_of(response, 400)["code"] == "bad_request"

    @pytest.mark.urls(__name__)
    def test_unhandled_exception_is_500_without_internals(self, api_client, caplog):
        response = api_client.get("/api/v1/crash/")
        error = error_of(response, 500)
        assert error["message"] == "Internal server error."
        assert "hunter2" not in response.content.decode()
        assert "RuntimeError" not in response.content.decode()
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def throttle_rates(settings, **rates):
    """Every throttle generous except the ``rates`` given."""
    current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(current, "1000/minute") | rates,
    }


class TestThrottling:
    def test_failed_logins_are_throttled_per_ip_with_retry_after(
        self, api_client, user, other_user, settings, redis_clean
    ):
        throttle_rates(settings, login_failures_ip="3/minute")
        for email in (user.email, other_user.email, "nobody@example.com"):
            api_client.post("/api/v1/auth/token/", {"email": email, "password": "wrong"})
        response = api_client.post(
            "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}
        )
        error = error_of(response, 429)
        assert error["code"] == "throttled"
        assert "failed logins" in error["message"]
        assert 0 < int(response["Retry-After"]) <= 60
        # The counter lives in Redis, where every server process sees it.
        assert any(b"throttle:login_failures_ip" in key for key in redis_clean.keys("*"))

    def test_registrations_are_limited_per_ip(self, api_client, settings):
        throttle_rates(settings, register="1/minute")
        api_client.post("/api/v1/auth/register/", {"email": "a@example.com", "password": "x" * 20})
        response = api_client.post(
            "/api/v1/auth/register/", {"email": "b@example.com", "password": "x" * 20}
        )
        error_of(response, 429)
        elsewhere = api_client.post(
            "/api/v1/auth/register/",
            {"email": "c@example.com", "password": "a-long-unusual-passphrase"},
            REMOTE_ADDR="10.1.2.3",
        )
        assert elsewhere.status_code == 201

    def test_per_user_default_rate(self, auth_client, settings):
        throttle_rates(settings, user="2/minute")
        assert auth_client.get("/api/v1/auth/me/").status_code == 200
        assert auth_client.get("/api/v1/auth/me/").status_code == 200
        response = auth_client.get("/api/v1/auth/me/")
        error_of(response, 429)
        assert "Retry-After" in response


class TestProbes:
    def test_healthz(self, client):
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_ok(self, client):
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["redis"] == "ok"

    def test_readyz_names_redis_when_unreachable(self, client, settings):
        settings.REDIS_URL = "redis://127.0.0.1:1/0"
        error = error_of(client.get("/readyz"), 503)
        assert error["details"] == {"database": "ok", "redis": "ConnectionError"}
        assert "redis" in error["message"]


class TestRequestIdAndLogs:
    @pytest.fixture
    def log_lines(self):
        """Captures what the configured JSON console handler really writes."""
        handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
        buffer = io.StringIO()
        previous = handler.setStream(buffer)
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
        handler.setStream(previous)

    def test_request_id_is_echoed_or_generated(self, api_client):
        assert api_client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
        generated = api_client.get("/healthz")["X-Request-ID"]
        assert len(generated) == 32
        hostile = api_client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
        assert hostile["X-Request-ID"] != "bad id\nwith newline"

    def test_one_json_line_per_request_with_its_fields(self, auth_client, user, log_lines):
        auth_client.get("/api/v1/auth/me/?page=1", HTTP_X_REQUEST_ID="req-42")
        line = next(entry for entry in log_lines() if entry.get("logger") == "parley.request")
        assert line["request_id"] == "req-42"
        assert line["method"] == "GET"
        assert line["path"] == "/api/v1/auth/me/"
        assert line["status"] == 200
        assert line["user_id"] == user.pk
        assert isinstance(line["duration_ms"], float)
        assert line["level"] == "INFO" and "time" in line

    def test_secrets_never_reach_the_logs(self, api_client, auth_client, user, log_lines):
        key = auth_client.post("/api/v1/auth/api-keys/", {"name": "k"}).json()["key"]
        tokens = api_client.post(
            "/api/v1/auth/token/", {"email": user.email, "password": PASSWORD}
        ).json()
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        api_client.get(f"/api/v1/auth/me/?token={tokens['access']}")
        api_client.post(
            "/api/v1/auth/token/", {"email": user.email, "password": "wrong-password-123"}
        )
        logging.getLogger("some.library").warning(
            "sending Authorization: Bearer %s with api_key=%s", tokens["access"], key
        )
        logging.getLogger("some.library").info("login", extra={"password": PASSWORD})
        written = json.dumps(log_lines())
        for secret in (key, tokens["access"], tokens["refresh"], PASSWORD, "wrong-password-123"):
            assert secret not in written
        assert "[redacted]" in written


class TestMetricsCorsSchemaAdmin:
    def test_metrics_exposes_request_and_database_metrics(self, client, auth_client):
        auth_client.get("/api/v1/auth/me/")
        body = client.get("/metrics").content.decode()
        assert "django_http_requests_total_by_method_total" in body
        assert "django_db_execute_total" in body

    def test_cors_allows_configured_origins_only(self, api_client, settings):
        settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
        allowed = api_client.options(
            "/api/v1/auth/token/",
            HTTP_ORIGIN="https://app.example.com",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        )
        assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
        denied = api_client.options("/api/v1/auth/token/", HTTP_ORIGIN="https://evil.example.com")
        assert "Access-Control-Allow-Origin" not in denied

    def test_schema_validates_without_warnings(self, tmp_path):
        target = tmp_path / "schema.yml"
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
        assert "ErrorResponse" in target.read_text()

    def test_schema_documents_both_auth_methods_and_the_error_shape(self, api_client):
        schema = api_client.get("/api/schema/?format=json").json()
        assert {"jwtAuth", "apiKeyAuth"} <= set(schema["components"]["securitySchemes"])
        me = schema["paths"]["/api/v1/auth/me/"]["get"]
        assert me["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }

    def test_docs_are_served_offline(self, api_client):
        for url in ("/api/docs/", "/api/redoc/"):
            html = api_client.get(url).content.decode()
            assert "/static/drf_spectacular_sidecar/" in html
            assert "cdn." not in html and "unpkg" not in html

    def test_admin_revoke_action_and_rq_dashboard(self, client, staff_user, user):
        from accounts.models import ApiKey
        from accounts.services import api_key_create

        issued = api_key_create(owner=user, name="ci")
        client.force_login(staff_user)
        assert client.get("/admin/accounts/apikey/").status_code == 200
        response = client.post(
            "/admin/accounts/apikey/",
            {"action": "revoke", "_selected_action": [issued.api_key.pk]},
        )
        assert response.status_code == 302
        assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
        index = client.get("/admin/").content.decode()
        assert "/admin/django_rq/dashboard/" in index  # the django-rq dashboard, linked
        assert client.get("/admin/django_rq/dashboard/").status_code == 200
        assert client.get("/admin/accounts/user/").status_code == 200

    def test_rq_dashboard_is_staff_only(self, client, user):
        client.force_login(user)
        assert client.get("/admin/django_rq/dashboard/").status_code == 302


DEV_SCRIPT = """
import hashlib, json, sys, time
import django, jwt
django.setup()
from django.conf import settings
from django.test import Client
from accounts.api.tokens import AccessToken

now = int(time.time())
claims = {"token_type": "access", "exp": now + 600, "iat": now, "jti": "j", "user_id": "1"}
public = jwt.encode(claims, "dev-insecure-jwt-signing-key-0123456789", algorithm="HS256")
response = Client(HTTP_HOST="127.0.0.1").get(
    "/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {public}"
)
not_found = [
    Client(HTTP_HOST="127.0.0.1").get(url) for url in ("/api/v1/jobs/0.5/", "/api/v1/nope/")
]
minted = AccessToken()
minted["user_id"] = "1"
earlier = sys.argv[1] if len(sys.argv) > 1 else None
if earlier:
    AccessToken(earlier)  # raises unless signed with this install's key
print(json.dumps({
    "public_token_status": response.status_code,
    "public_token_body": response.json(),
    "debug": settings.DEBUG,
    "not_found": [(r.status_code, r["Content-Type"], r.content.decode()) for r in not_found],
    "minted": str(minted),
    "jwt_key": hashlib.sha256(settings.SIMPLE_JWT["SIGNING_KEY"].encode()).hexdigest(),
    "secret_key": hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest(),
}))
"""


class TestDevelopmentSecrets:
    """Development settings never sign with a key printed in the source or the README."""

    def run_dev(self, var_dir, *args, **env):
        environment = {
            k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY")
        }
        environment.update(
            DJANGO_SETTINGS_MODULE="project.settings.development", VAR_DIR=str(var_dir), **env
        )
        result = subprocess.run(
            [sys.executable, "-c", DEV_SCRIPT, *args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def test_a_random_key_per_install_kept_in_var_and_reused(self, tmp_path):
        var_dir = tmp_path / "var"
        first = self.run_dev(var_dir)
        # A token signed with the old public constant is refused.
        assert first["public_token_status"] == 401
        assert first["public_token_body"]["error"]["code"] == "token_not_valid"
        # The error shape holds under development settings (DEBUG on) too.
        assert first["debug"] is True
        for status, content_type, body in first["not_found"]:
            assert (status, content_type) == (404, "application/json")
            assert json.loads(body)["error"]["code"] == "not_found"
        secrets_file = var_dir / "dev-secrets.json"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        stored = json.loads(secrets_file.read_text())
        assert set(stored) == {"SECRET_KEY", "JWT_SIGNING_KEY"}
        assert stored["SECRET_KEY"] != stored["JWT_SIGNING_KEY"]
        assert len(stored["JWT_SIGNING_KEY"]) >= 40
        # The next process (a restart, the worker) reads the same keys: tokens stay valid.
        second = self.run_dev(var_dir, first["minted"])
        assert (second["jwt_key"], second["secret_key"]) == (first["jwt_key"], first["secret_key"])
        # Another install gets other keys.
        other = self.run_dev(tmp_path / "other-var")
        assert other["jwt_key"] != first["jwt_key"]

    def test_keys_from_the_environment_win(self, tmp_path):
        result = self.run_dev(
            tmp_path / "var",
            SECRET_KEY="an-operator-chosen-secret-key-0123456789",
            JWT_SIGNING_KEY="an-operator-chosen-signing-key-0123456789",
        )
        expected = hashlib.sha256(b"an-operator-chosen-signing-key-0123456789").hexdigest()
        assert result["jwt_key"] == expected
        assert not (tmp_path / "var" / "dev-secrets.json").exists()


class TestProductionSettings:
    def run_check(self, **env):
        environment = {
            k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY")
        }
        environment.update(DJANGO_SETTINGS_MODULE="project.settings.production", **env)
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_refuses_to_start_without_secret_key(self):
        result = self.run_check()
        assert result.returncode != 0
        assert "SECRET_KEY" in result.stderr

    def test_refuses_to_start_without_jwt_signing_key(self):
        result = self.run_check(SECRET_KEY="k" * 20 + "Zq8$vL2#pX9!mR4&nT7@wY1%bC6^dF3*")
        assert result.returncode != 0
        assert "JWT_SIGNING_KEY" in result.stderr

    def test_check_deploy_is_clean(self):
        result = self.run_check(
            SECRET_KEY="k" * 20 + "Zq8$vL2#pX9!mR4&nT7@wY1%bC6^dF3*",
            JWT_SIGNING_KEY="another-long-random-signing-key-for-jwts-0123456789",
            ALLOWED_HOSTS="parley.example.com",
        )
        assert result.returncode == 0, result.stdout + result.stderr
