"""Local development: DEBUG on, an insecure default secret, SQLite unless DATABASE_URL is set."""

from .base import *  # noqa: F403
from .base import SIMPLE_JWT, env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-secret-key-change-me-0123456789abcdef")
SIMPLE_JWT["SIGNING_KEY"] = env(
    "JWT_SIGNING_KEY", default="dev-insecure-jwt-signing-key-0123456789"
)
