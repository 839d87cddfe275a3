"""Test settings: fast hashing; DATABASE_URL / REDIS_URL pick real services when set."""

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK, SIMPLE_JWT

SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
SIMPLE_JWT["SIGNING_KEY"] = "test-jwt-signing-key-0123456789abcdef"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = dict.fromkeys(
    REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "1000/minute"
)

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not the in-memory default: threads in a test then take turns on SQLite's
    # locks as the web server and workers do (the shared-cache memory database fails them
    # with "table is locked"), so concurrency regressions are tested on SQLite too.
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405
