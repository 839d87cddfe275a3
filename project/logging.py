"""Logging pieces: the request id on every record, and secrets scrubbed before anything is written."""

import contextvars
import logging
import re

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    return _request_id.get()


def bind_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value)


def unbind_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the HTTP request's, or the job's in a worker) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or None
        return True


SECRET_PATTERNS = [
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bprl_[A-Za-z0-9_-]{6,}"),  # Parley API keys
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI and Anthropic keys
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(
        r"(?i)(x-api-key|api[_-]?key|authorization|password|secret)(['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"
    ),
]
SENSITIVE_FIELDS = {
    "password",
    "token",
    "access",
    "refresh",
    "authorization",
    "api_key",
    "key",
    "secret",
}
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace anything that looks like a credential with ``[redacted]``."""
    for pattern in SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Last line of defence: no log line carries a password, token or key, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for field in SENSITIVE_FIELDS & record.__dict__.keys():
            record.__dict__[field] = REDACTED
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
