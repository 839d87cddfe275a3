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
    # A file, like the running service's (WAL, BEGIN IMMEDIATE, a lock timeout): Django's default
    # shared-cache in-memory test database fails concurrent writers with "database table is
    # locked" at once instead of waiting, so live concurrency tests could not run on SQLite.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405
