"""Test-only job kinds, registered like an app would register its own (imported by the
jobs tests' conftest, and by worker subprocesses those tests start)."""

import time

import redis
from django.conf import settings

from jobs.exceptions import PermanentJobError, TransientJobError
from jobs.registry import register
from jobs.services import job_cancel_requested

terminal_hook_calls: list[tuple[str, str]] = []


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def echo(job):
    _redis().set(f"test:echo:{job.pk}", job.payload.get("say", ""))


def flaky(job):
    if job.attempts == 1:
        raise TransientJobError("upstream busy", retry_after=job.payload.get("retry_after"))


def broken(job):
    raise PermanentJobError("bad input: no such thing")


def crash(job):
    raise RuntimeError("secret internals sk-should-not-leak-123456")


def slow(job):
    _redis().set(f"test:started:{job.pk}", "1")
    deadline = time.monotonic() + job.payload.get("seconds", 10)
    while time.monotonic() < deadline:
        if job_cancel_requested(job.pk):
            _redis().set(f"test:stopped:{job.pk}", "1")
            return
        time.sleep(0.02)


def record_terminal(job):
    terminal_hook_calls.append((str(job.pk), job.status))


for name, handler in {
    "test.echo": echo,
    "test.flaky": flaky,
    "test.broken": broken,
    "test.crash": crash,
    "test.slow": slow,
}.items():
    register(name, handler, on_terminal=record_terminal)
