"""Maps a job kind to the function that runs it. ``jobs`` knows no kinds of its own: apps
register theirs in ``AppConfig.ready`` (the llm app registers ``llm.completion``)."""

from collections.abc import Callable
from dataclasses import dataclass

from jobs.models import Job

Handler = Callable[[Job], None]
Hook = Callable[[Job], None]
# Why a failed or cancelled job cannot be retried now (its subject is gone), or None.
RetryBlocker = Callable[[Job], str | None]
# Asked when transient failures used up a job's attempts: how it will try again another way
# (it may change ``job.payload``, which is saved), or None to let it fail.
ExhaustedHook = Callable[[Job], str | None]


@dataclass(frozen=True, slots=True)
class JobKind:
    handler: Handler
    on_terminal: Hook | None = None  # after the job became completed, failed or cancelled
    on_retry: Hook | None = None  # after a failed or cancelled job was queued again
    retry_blocker: RetryBlocker | None = None  # asked before a retry; a reason refuses it
    on_exhausted: ExhaustedHook | None = None  # attempts used up: another way, or None


_kinds: dict[str, JobKind] = {}  # written once at start-up, read-only afterwards


def register(
    kind: str,
    handler: Handler,
    *,
    on_terminal: Hook | None = None,
    on_retry: Hook | None = None,
    retry_blocker: RetryBlocker | None = None,
    on_exhausted: ExhaustedHook | None = None,
) -> None:
    """Register ``handler(job)`` for ``kind``. Handlers raise ``TransientJobError`` or
    ``PermanentJobError`` (jobs.exceptions) to signal failure; returning means success.
    They may run in threads: no shared mutable state. ``retry_blocker(job)`` returns why the
    job cannot run again (e.g. what it works on was deleted), so a retry is refused up front.
    ``on_exhausted(job)``, when transient errors used up the attempts, names another way to
    try (the llm app falls back to another model): the job is queued again with fresh
    attempts instead of failing."""
    _kinds[kind] = JobKind(handler, on_terminal, on_retry, retry_blocker, on_exhausted)


def kind_of(kind: str) -> JobKind | None:
    return _kinds.get(kind)


# Extra recovery work other apps attach to every reconcile pass (llm releases the budget
# reservations of jobs that vanished): name -> step(dry_run=...) returning how many it fixed.
ReconcileStep = Callable[..., int]
_reconcile_steps: dict[str, ReconcileStep] = {}


def register_reconcile_step(name: str, step: ReconcileStep) -> None:
    """Run ``step(dry_run=bool) -> int`` at the end of every ``jobs_reconcile``."""
    _reconcile_steps[name] = step


def reconcile_steps() -> dict[str, ReconcileStep]:
    return dict(_reconcile_steps)
