"""Settings shared by every environment. Everything that differs between deployments is read
from the environment through one ``environ.Env`` (see the README's configuration table)."""

from datetime import timedelta
from pathlib import Path

import environ
from corsheaders.defaults import default_headers as default_cors_headers

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's .env is read when present; real deployments set the environment instead.
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

# Local state: the SQLite database and development secrets.
VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # First: sets up OpenTelemetry (when OTEL_* asks for it) before anything loads middleware.
    "project.apps.ProjectConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_rq",
    "django_prometheus",
    "accounts",
    "jobs",
    "llm",
    "budgets",
    "teams",
    "auditlog",
    "audit",
    "sso",
    "selfservice",
]

MIDDLEWARE = [
    # django-prometheus wraps everything else so it times the whole request.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "project.middleware.RequestIdMiddleware",
    "project.middleware.HotCacheSnapshotMiddleware",
    "project.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "project.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who acts, from which address (audit log); read lazily, after DRF has authenticated.
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "selfservice.context_processors.sign_in_options",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# django-prometheus' backends are the stock ones plus query/connection metrics.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
if DATABASES["default"]["ENGINE"].endswith("postgresql") and env.bool("DB_POOL", default=True):
    # Under ASGI every request runs its sync code in a fresh thread, so per-thread persistent
    # connections pile up ("too many clients"); a process-wide psycopg pool bounds them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
elif DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web server and worker threads share one file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache (throttling, shared across processes), queues, live streams ----------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        # Django's Redis cache on project.redis's shared, bounded pool (REDIS_POOL_*).
        "BACKEND": "project.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "parley",
    }
}
# project.redis: one client per process (sync) and per event loop (asyncio), each on a bounded
# pool that makes callers wait for a free connection (up to REDIS_POOL_TIMEOUT s, then a
# RedisError) instead of failing at once. An open reply stream holds one async connection.
REDIS_POOL_MAX_CONNECTIONS = env.int("REDIS_POOL_MAX_CONNECTIONS", default=100)
REDIS_POOL_TIMEOUT = env.float("REDIS_POOL_TIMEOUT", default=10.0)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=5.0)
REDIS_SOCKET_CONNECT_TIMEOUT = env.float("REDIS_SOCKET_CONNECT_TIMEOUT", default=2.0)
# Open SSE reply streams per user, counted across processes in Redis; more answer 429.
STREAMS_MAX_PER_USER = env.int("STREAMS_MAX_PER_USER", default=20)
# An open stream renews its place every third of this; a crashed process's expire after it.
STREAMS_SLOT_TTL = env.float("STREAMS_SLOT_TTL", default=60.0)
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
    "completions": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
    # Recovery (reconcile_jobs) only, served by a worker of its own: never behind replies.
    "maintenance": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
# Workers run jobs in threads of their own process (jobs.worker.ThreadPoolWorker, up to
# JOBS_WORKER_CONCURRENCY at once): a completion is I/O-bound, a forked work horse would rebuild
# its provider clients and database connection every time, and one job per process wasted a
# process per waiting reply (bench/README.md). Cancel and time limits use the handler's watchdog.
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": "jobs.worker.ThreadPoolWorker"}
RQ_SHOW_ADMIN_LINK = True

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
REGISTRATION_OPEN = env.bool("REGISTRATION_OPEN", default=True)
# false: no password sign-in anywhere (admin, self-service page, auth/token/); single sign-on only.
PASSWORD_SIGNIN_ENABLED = env.bool("PASSWORD_SIGNIN_ENABLED", default=True)
# Both backends are always listed; each checks its own setting on every call, so one setting
# turns a way of signing in off everywhere at once.
AUTHENTICATION_BACKENDS = ["accounts.backends.PasswordBackend", "sso.backends.OIDCBackend"]
LOGIN_URL = "selfservice:login"
LOGIN_REDIRECT_URL = "selfservice:overview"
LOGOUT_REDIRECT_URL = "selfservice:login"

# --- Single sign-on (OpenID Connect, authorization code with PKCE) ----------------------------
# mozilla-django-oidc reads the OIDC_RP_*/OIDC_* names below; endpoints come from discovery.
OIDC_ISSUER = env("OIDC_ISSUER", default="")  # empty: single sign-on is off
OIDC_PROVIDER_NAME = env("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_RP_CLIENT_ID = env("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SIGN_ALGO = env("OIDC_SIGN_ALGORITHM", default="RS256")
OIDC_RP_SCOPES = env("OIDC_SCOPES", default="openid email profile groups")
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_AUTHENTICATION_CALLBACK_URL = "sso:callback"
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_CLOCK_SKEW_SECONDS = env.int("OIDC_CLOCK_SKEW_SECONDS", default=60)
OIDC_DISCOVERY_CACHE_SECONDS = env.int("OIDC_DISCOVERY_CACHE_SECONDS", default=3600)
OIDC_ALLOWED_EMAIL_DOMAINS = env.list("OIDC_ALLOWED_EMAIL_DOMAINS", default=[])
OIDC_ALLOWED_GROUPS = env.list("OIDC_ALLOWED_GROUPS", default=[])
OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", default="groups")
# group=team-slug (member) or group=team-slug:admin, comma-separated.
OIDC_GROUP_TEAMS = env.dict("OIDC_GROUP_TEAMS", default={})

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    # A key of its own, so rotating SECRET_KEY and rotating JWTs are separate decisions.
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "AUTH_TOKEN_CLASSES": ("accounts.api.tokens.AccessToken",),
    "TOKEN_REFRESH_SERIALIZER": "accounts.api.serializers.TokenRefreshSerializer",
    "TOKEN_VERIFY_SERIALIZER": "accounts.api.serializers.TokenVerifySerializer",
}
API_KEY_LAST_USED_RESOLUTION = timedelta(minutes=1)

# --- LLM providers --------------------------------------------------------------------------
# Set by the run command when no provider key is configured: the local stand-in provider.
STANDIN_BASE_URL = env("STANDIN_BASE_URL", default="")
LLM_REQUEST_TIMEOUT = env.float("LLM_REQUEST_TIMEOUT", default=60.0)
LLM_DEFAULT_MAX_TOKENS = env.int("LLM_DEFAULT_MAX_TOKENS", default=1024)
LLM_MAX_MESSAGE_CHARS = env.int("LLM_MAX_MESSAGE_CHARS", default=32_000)
LLM_MAX_MESSAGES_PER_CONVERSATION = env.int("LLM_MAX_MESSAGES_PER_CONVERSATION", default=500)
LLM_MAX_SYSTEM_PROMPT_CHARS = env.int("LLM_MAX_SYSTEM_PROMPT_CHARS", default=16_000)
# A small, cheap catalog model (slug) that titles untitled conversations; empty = off.
LLM_TITLE_MODEL = env("LLM_TITLE_MODEL", default="")
# Keep the prompt and reply text of /v1/ calls on their GatewayCall records (off: tokens only).
LLM_GATEWAY_STORE_TEXT = env.bool("LLM_GATEWAY_STORE_TEXT", default=False)

# Spend controls (budgets app). A default budget for every new user (empty: none), and
# default per-minute rate limits per user and per API key (0: no limit) that a RateLimit row
# set by staff overrides.
BUDGET_DEFAULT_USER_USD = env("BUDGET_DEFAULT_USER_USD", default=None)
BUDGET_DEFAULT_USER_TOKENS = env.int("BUDGET_DEFAULT_USER_TOKENS", default=None)
BUDGET_DEFAULT_USER_PERIOD = env("BUDGET_DEFAULT_USER_PERIOD", default="monthly")
RATE_LIMIT_USER_RPM = env.int("RATE_LIMIT_USER_RPM", default=0)
RATE_LIMIT_USER_TPM = env.int("RATE_LIMIT_USER_TPM", default=0)
RATE_LIMIT_API_KEY_RPM = env.int("RATE_LIMIT_API_KEY_RPM", default=0)
RATE_LIMIT_API_KEY_TPM = env.int("RATE_LIMIT_API_KEY_TPM", default=0)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "accounts.api.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "project.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "project.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["project.api.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["project.api.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("THROTTLE_USER_RATE", default="600/minute"),
        # What guards against guessing (accounts/api/throttling.py): failed logins per
        # account and per client IP, registrations per IP; valid tokens' refresh, verify and
        # logout per user.
        "login_failures_account": env("THROTTLE_LOGIN_FAILURES_PER_ACCOUNT", default="10/hour"),
        "login_failures_ip": env("THROTTLE_LOGIN_FAILURES_PER_IP", default="100/hour"),
        "register": env("THROTTLE_REGISTER_RATE", default="20/hour"),
        "token": env("THROTTLE_TOKEN_RATE", default="60/minute"),
    },
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

# Bodies larger than this answer 413 before they are read (see project.middleware).
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": (
        "Managed access to large language models for a team. Authenticate with "
        "`Authorization: Bearer <JWT access token or API key>`. Every error uses the "
        "`ErrorResponse` shape."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "llm.schema.add_stream_endpoint",
        "project.api.schema.add_error_responses",
        "project.api.schema.document_empty_query_values",
    ],
    "ENUM_NAME_OVERRIDES": {
        "TeamRoleEnum": "teams.models.TeamRole",
        "ModelKindEnum": "llm.models.ModelKind",
        "TeamKeyKindEnum": ["service", "personal"],
    },
}

# --- CORS -----------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
# /v1/ too: browser clients of the OpenAI/Anthropic SDKs send their own headers (Stainless
# ``x-stainless-*``: "*" covers them, except Authorization, which must be named).
CORS_URLS_REGEX = r"^/(api|v1)/.*$"
CORS_ALLOW_HEADERS = (
    *default_cors_headers,
    "*",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "idempotency-key",
    "openai-organization",
    "openai-project",
)
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the apps' static folders when collectstatic has not run (development).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Tracing (project/tracing.py): off unless the standard OTEL_* variables turn it on --------
# Prompt and reply text on provider-call spans (gen_ai.input/output.messages): off by default.
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = env.bool(
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", default=False
)

# --- Audit log (audit app + django-auditlog) ---------------------------------------------------
# Field-level history of what staff and team admins change, from any path (admin forms,
# services, shells). Actor, address and request id come from audit.middleware.
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    {"model": "accounts.User", "exclude_fields": ["password", "last_login"]},
    {"model": "accounts.ApiKey", "exclude_fields": ["key_hash", "last_used_at"]},
    {"model": "budgets.Budget", "exclude_fields": ["updated_at"]},
    "budgets.RateLimit",
    {"model": "llm.ModelAccess", "m2m_fields": {"allowed_models"}},
    {"model": "llm.LLMModel", "exclude_fields": ["updated_at"]},
    "llm.ModelFallback",
    "teams.Team",
    "teams.Membership",
    "teams.TeamApiKey",
)
AUDITLOG_CID_GETTER = "project.logging.current_request_id"
AUDITLOG_STORE_JSON_CHANGES = True

# --- Logging: one JSON object per line, with the request id ---------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "project.logging.RequestIdFilter"},
        "redact": {"()": "project.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our own request line replaces django.server/django.request noise.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
# Opt-in: the same JSON lines also go to a rotating file that every process of the stack (web
# workers, RQ workers, scheduler, commands) shares. concurrent-log-handler takes a lock file
# around each write and each rotation, so processes neither tear nor lose nor repeat lines;
# the standard RotatingFileHandler would rotate under another process's feet.
LOG_FILE = env("LOG_FILE", default="")
if LOG_FILE:
    LOGGING["handlers"]["file"] = {
        "class": "concurrent_log_handler.ConcurrentRotatingFileHandler",
        "filename": LOG_FILE,
        "maxBytes": env.int("LOG_FILE_MAX_BYTES", default=50 * 1024 * 1024),
        "backupCount": env.int("LOG_FILE_BACKUP_COUNT", default=10),
        "encoding": "utf-8",
        "formatter": "json",
        "filters": ["request_id", "redact"],
    }
    LOGGING["root"]["handlers"].append("file")

# --- Jobs ------------------------------------------------------------------------------------
JOBS_MAX_ATTEMPTS = env.int("JOBS_MAX_ATTEMPTS", default=4)
JOBS_BACKOFF_BASE = env.float("JOBS_BACKOFF_BASE", default=2.0)  # seconds before attempt 2
JOBS_BACKOFF_MAX = env.float("JOBS_BACKOFF_MAX", default=120.0)
# An attempt running longer fails; enforced by the handler's watchdog (jobs.runner), since a
# thread cannot be killed.
JOBS_TIMEOUT = env.int("JOBS_TIMEOUT", default=600)
# Jobs one worker process runs at once (jobs.worker.ThreadPoolWorker, threads): a completion
# waits on its provider >99% of the time. 50 keeps a process near 150-250 MiB and well inside
# its database and Redis pools; raise it for long replies (README: sizing workers).
JOBS_WORKER_CONCURRENCY = env.int("JOBS_WORKER_CONCURRENCY", default=50)
# On SIGTERM a worker lets running jobs finish this long, then hands the rest back to the queue.
JOBS_SHUTDOWN_GRACE = env.float("JOBS_SHUTDOWN_GRACE", default=30.0)
# A running job's worker refreshes a heartbeat; this long without one means the worker died.
JOBS_HEARTBEAT_TTL = env.int("JOBS_HEARTBEAT_TTL", default=30)
JOBS_RECONCILE_INTERVAL = env.int("JOBS_RECONCILE_INTERVAL", default=30)
# Queued jobs younger than this are left to their on-commit enqueue by reconcile.
JOBS_ENQUEUE_GRACE = env.int("JOBS_ENQUEUE_GRACE", default=10)
