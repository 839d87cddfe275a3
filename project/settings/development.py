"""Local development: DEBUG on, SQLite unless DATABASE_URL is set, and secrets that are random
per install (kept in var/dev-secrets.json) unless SECRET_KEY / JWT_SIGNING_KEY are set."""

from .base import *  # noqa: F403
from .base import SIMPLE_JWT, VAR_DIR, env
from .local_secrets import install_secret

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="") or install_secret("SECRET_KEY", var_dir=VAR_DIR)
SIMPLE_JWT["SIGNING_KEY"] = env("JWT_SIGNING_KEY", default="") or install_secret(
    "JWT_SIGNING_KEY", var_dir=VAR_DIR
)
