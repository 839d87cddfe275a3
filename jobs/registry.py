"""Maps a job kind to the function that runs it. ``jobs`` knows no kinds of its own: apps
register theirs in ``AppConfig.ready`` (the llm app registers ``llm.completion``)."""

from collections.abc import Callable
from dataclasses import dataclass

from jobs.models import Job

Handler = Callable[[Job], None]
Hook = Callable[[Job], None]


@dataclass(frozen=True, slots=True)
class JobKind:
    handler: Handler
    on_terminal: Hook | None = None  # after the job became completed, failed or cancelled
    on_retry: Hook | None = None  # after a failed or cancelled job was queued again


_kinds: dict[str, JobKind] = {}  # written once at start-up, read-only afterwards


def register(
    kind: str, handler: Handler, *, on_terminal: Hook | None = None, on_retry: Hook | None = None
) -> None:
    """Register ``handler(job)`` for ``kind``. Handlers raise ``TransientJobError`` or
    ``PermanentJobError`` (jobs.exceptions) to signal failure; returning means success.
    They may run in threads: no shared mutable state."""
    _kinds[kind] = JobKind(handler, on_terminal, on_retry)


def kind_of(kind: str) -> JobKind | None:
    return _kinds.get(kind)
