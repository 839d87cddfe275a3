"""Writes to the audit log. ``audit_record`` is the one way in; other apps (accounts, teams,
SSO) call it with what happened, and it adds who, from where and which request."""

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from auditlog.models import LogEntry
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit.context import current_origin
from audit.models import AuditEvent
from project.logging import current_request_id, redact

# Never stored even if a caller passes them by mistake.
_SECRET_KEYS = {"password", "key", "secret", "token", "key_hash", "access", "refresh"}


def _plain(value: Any) -> Any:
    """JSON-safe, secret-free copy of a value for ``changes`` / ``data``."""
    if isinstance(value, Mapping):
        return {
            str(k): ("[redacted]" if str(k).lower() in _SECRET_KEYS else _plain(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal | datetime):
        return str(value)
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def audit_record(
    *,
    action: str,
    target: Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    changes: Mapping[str, tuple[Any, Any] | list[Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    actor: Any = None,
) -> AuditEvent:
    """Append one event. ``action`` is ``<thing>.<verb>`` (``api_key.revoked``,
    ``auth.sign_in_failed``); ``changes`` maps a field to ``(before, after)``. The actor,
    address, request id and source come from the current request or command unless ``actor``
    is given (a sign-in names the user who signed in). Written in the caller's transaction,
    so an action that rolls back leaves no event behind. Never raises for odd values: they are
    stored as strings; secrets are dropped by key name and redacted by pattern."""
    origin = current_origin()
    actor = actor if actor is not None else origin.actor
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_repr = target_repr or str(target)
    extra = dict(_plain(data or {}))
    if origin.command:
        extra.setdefault("command", origin.command)
    return AuditEvent.objects.create(
        action=action,
        actor_id=getattr(actor, "pk", None),
        actor_email=(getattr(actor, "email", "") or "")[:254],
        actor_is_staff=bool(getattr(actor, "is_staff", False)),
        target_type=target_type[:64],
        target_id=str(target_id)[:64],
        target_repr=str(target_repr)[:200],
        changes={field: _plain(list(pair)) for field, pair in (changes or {}).items()},
        data=extra,
        ip=origin.ip,
        request_id=current_request_id()[:128],
        source=origin.source,
    )


def event_line(event: AuditEvent) -> dict[str, Any]:
    return {
        "kind": "event",
        "id": event.pk,
        "time": event.created_at.isoformat(),
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_email": event.actor_email,
        "actor_is_staff": event.actor_is_staff,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target_repr,
        "changes": event.changes,
        "data": event.data,
        "ip": event.ip,
        "request_id": event.request_id,
        "source": event.source,
    }


_CHANGE_ACTIONS = {
    LogEntry.Action.CREATE: "created",
    LogEntry.Action.UPDATE: "updated",
    LogEntry.Action.DELETE: "deleted",
    LogEntry.Action.ACCESS: "accessed",
}


def _change_line(entry: LogEntry) -> dict[str, Any]:
    label = f"{entry.content_type.app_label}.{entry.content_type.model}"
    return {
        "kind": "change",
        "id": entry.pk,
        "time": entry.timestamp.isoformat(),
        "action": f"{label}.{_CHANGE_ACTIONS.get(entry.action, entry.action)}",
        "actor_id": entry.actor_id,
        "actor_email": entry.actor_email or "",
        "target_type": label,
        "target_id": entry.object_pk,
        "target": entry.object_repr,
        "changes": entry.changes or {},
        "ip": entry.remote_addr,
        "request_id": entry.cid or "",
    }


def audit_lines(
    *, since: datetime | None = None, until: datetime | None = None, chunk_size: int = 2000
) -> Iterator[str]:
    """The whole audit trail as JSON lines, oldest first: named events and field-level model
    changes (django-auditlog) merged by time. Streams in chunks, so any size exports in flat
    memory."""
    events = AuditEvent.objects.order_by("created_at", "id")
    changes = LogEntry.objects.select_related("content_type").order_by("timestamp", "id")
    if since is not None:
        events, changes = events.filter(created_at__gte=since), changes.filter(timestamp__gte=since)
    if until is not None:
        events, changes = events.filter(created_at__lt=until), changes.filter(timestamp__lt=until)
    yield from _merge(
        (event_line(e) for e in events.iterator(chunk_size=chunk_size)),
        (_change_line(c) for c in changes.iterator(chunk_size=chunk_size)),
    )


def _merge(*streams: Iterable[dict[str, Any]]) -> Iterator[str]:
    import heapq

    for line in heapq.merge(*streams, key=lambda line: line["time"]):
        yield json.dumps(line, sort_keys=True, default=str)


def audit_prune(*, older_than: datetime) -> dict[str, int]:
    """Delete audit events and model change entries recorded before ``older_than``: the one
    deletion the log allows. On PostgreSQL the append-only trigger lets it through only inside
    this transaction (``SET LOCAL parley.audit_prune``)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL parley.audit_prune = 'on'")
        events = AuditEvent.objects.filter(created_at__lt=older_than)._prune_delete()
        changes = LogEntry.objects.filter(timestamp__lt=older_than).delete()[0]
    return {"events": events, "changes": changes}


def audit_cutoff(*, days: int) -> datetime:
    return timezone.now() - timedelta(days=days)
