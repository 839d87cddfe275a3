"""Writes for accounts: users, passwords, API keys. Views and the admin both call these."""

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.revocation import access_revoked
from audit.services import audit_record
from project.errors import InvalidInput

API_KEY_PREFIX = "prl_"


def _password_check(password: str, user: User, *, field: str) -> None:
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise InvalidInput(
            "The password does not meet the requirements.",
            code="weak_password",
            details={field: exc.messages},
        ) from None


def user_create(*, email: str, password: str, name: str = "", is_staff: bool = False) -> User:
    """Create an active user. The password must pass the configured validators; an email
    already in use (in any letter case) is refused with ``email_taken``."""
    email_taken = InvalidInput(
        "An account with this email already exists.",
        code="email_taken",
        details={"email": ["An account with this email already exists."]},
    )
    user = User(email=email.lower(), name=name, is_staff=is_staff)
    if User.objects.with_email(user.email).exists():
        raise email_taken
    _password_check(password, user, field="password")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            audit_record(action="user.created", target=user, data={"is_staff": is_staff})
    except IntegrityError:  # lost a race with another registration
        raise email_taken from None
    return user


def user_get_or_create_signed_on(*, email: str, name: str = "") -> tuple[User, bool]:
    """The user an identity provider vouched for, created on their first sign-in with no
    usable password (they sign in through the provider). Returns ``(user, created)``; two
    first sign-ins at once make one account."""
    user = User.objects.with_email(email).first()
    if user is not None:
        return user, False
    user = User(email=email.lower(), name=name[:150])
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
            audit_record(action="user.created", target=user, data={"via": "oidc"})
    except IntegrityError:  # the same person's other first sign-in won
        return User.objects.with_email(email).get(), False
    return user, True


def user_signed_in(*, user: User, method: str) -> None:
    """Record a successful sign-in that Django's ``user_logged_in`` signal does not announce
    (the JWT token endpoint; SSO). ``method``: ``jwt``, ``oidc``..."""
    audit_record(action="auth.sign_in", target=user, actor=user, data={"method": method})


def user_update(*, user: User, name: str | None = None) -> User:
    if name is not None:
        user.name = name
        user.save(update_fields=["name"])
    return user


# Signed-in sessions (JWT refresh tokens) belong to the API layer, which registers how to end
# them (accounts/api/tokens.py, from AccountsConfig.ready): the rules below then hold whoever
# calls them (the API, the admin, a command) without this module knowing about JWTs.
SessionRevoker = Callable[[User], int]
_session_revokers: list[SessionRevoker] = []


def register_session_revoker(revoker: SessionRevoker) -> None:
    """``revoker(user)`` ends the user's sessions and returns how many. Registering twice is a
    no-op."""
    if revoker not in _session_revokers:
        _session_revokers.append(revoker)


def user_sessions_end(*, user: User) -> int:
    """End every signed-in session of ``user`` (their refresh tokens stop working); access
    tokens already issued last until they expire. Returns how many sessions ended."""
    return sum(revoker(user) for revoker in _session_revokers)


@transaction.atomic
def user_password_change(*, user: User, new_password: str) -> None:
    """Set a new password; every session signed in before it ends."""
    _password_check(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    ended = user_sessions_end(user=user)
    audit_record(action="user.password_changed", target=user, data={"sessions_ended": ended})


@transaction.atomic
def user_password_disable(*, user: User) -> None:
    """No password sign-in for ``user`` any more; every session signed in with one ends."""
    user.set_unusable_password()
    user.save(update_fields=["password"])
    ended = user_sessions_end(user=user)
    audit_record(action="user.password_disabled", target=user, data={"sessions_ended": ended})


def _api_keys_revoke_all(user: User) -> list[int]:
    """Revoke every key of ``user`` not yet revoked (rows locked, so a concurrent revoke of
    one of them waits); their ids."""
    revoked_ids = list(
        ApiKey.objects.select_for_update()
        .filter(owner=user, revoked_at__isnull=True)
        .values_list("pk", flat=True)
    )
    ApiKey.objects.filter(pk__in=revoked_ids).update(revoked_at=timezone.now())
    return revoked_ids


@transaction.atomic
def user_deactivate(*, user: User) -> int:
    """An inactive user can neither log in, refresh, nor use an API key. Their keys are revoked
    and their sessions ended, not merely ignored, so reactivating the account later brings
    none of them back; their open streams end within a second or two (``access_revoked``).
    Safe to call twice. Returns how many API keys were revoked."""
    was_active = user.is_active
    user.is_active = False
    user.save(update_fields=["is_active"])
    revoked_ids = _api_keys_revoke_all(user)
    ended = user_sessions_end(user=user)
    audit_record(
        action="user.deactivated",
        target=user,
        changes={"is_active": (was_active, False)},
        data={"api_keys_revoked": revoked_ids, "sessions_ended": ended},
    )
    access_revoked(user_id=user.pk, api_key_ids=revoked_ids)
    return len(revoked_ids)


@transaction.atomic
def user_access_end(*, user: User) -> int:
    """Offboarding short of deactivation (the identity provider no longer lets ``user`` in):
    their personal API keys are revoked, every session ends (JWT refresh tokens, and signed-in
    browsers, whose session hash follows the password) and password sign-in goes, so only a
    new single sign-on that the provider allows brings them back; their open streams end within
    a second or two (``access_revoked``). Safe to call twice. Returns how many API keys were
    revoked."""
    revoked_ids = _api_keys_revoke_all(user)
    user_password_disable(user=user)
    audit_record(action="user.access_ended", target=user, data={"api_keys_revoked": revoked_ids})
    access_revoked(user_id=user.pk, api_key_ids=revoked_ids)
    return len(revoked_ids)


def user_activate(*, user: User) -> None:
    """Let ``user`` sign in again, with new sessions and keys (old ones stay revoked)."""
    was_active = user.is_active
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(action="user.activated", target=user, changes={"is_active": (was_active, True)})


def api_key_hash(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is safe; a slow KDF would only cost latency.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    api_key: ApiKey
    secret: str  # shown to the user once, never stored


def api_key_create(*, owner: User, name: str, expires_at: datetime | None = None) -> IssuedApiKey:
    """Issue a key ``prl_<prefix>_<secret>``; only the prefix and a hash of the whole key are kept."""
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", code="invalid_expiry")
    prefix = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            owner=owner,
            name=name,
            prefix=prefix,
            key_hash=api_key_hash(secret),
            expires_at=expires_at,
        )
        audit_record(action="api_key.created", target=api_key, data=_api_key_facts(api_key))
    return IssuedApiKey(api_key=api_key, secret=secret)


def _api_key_facts(api_key: ApiKey) -> dict:
    # What identifies a key in the audit log: never its secret or hash.
    return {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "owner_id": api_key.owner_id,
        "expires_at": api_key.expires_at,
    }


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key for good: new requests with it are refused, and its open streams end within
    a second or two (``access_revoked``). Revoking twice keeps the first time."""
    if api_key.revoked_at is None:
        with transaction.atomic():
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            audit_record(
                action="api_key.revoked",
                target=api_key,
                changes={"revoked_at": (None, api_key.revoked_at)},
                data=_api_key_facts(api_key),
            )
            access_revoked(api_key_ids=[api_key.pk])
    return api_key


# When this process last recorded each key's use: the key itself may come from a cache that
# holds an older ``last_used_at`` (project.hotcache), and must not cost a write per request.
# Keyed by the random prefix, not the id: an id can come back (a test database flushed with
# its sequences reset) and would inherit another key's "recently used".
_touched: dict[str, datetime] = {}


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use at most once per API_KEY_LAST_USED_RESOLUTION, not one write per request."""
    now = timezone.now()
    stale_before = now - settings.API_KEY_LAST_USED_RESOLUTION
    last = max(filter(None, (api_key.last_used_at, _touched.get(api_key.prefix))), default=None)
    if last is not None and last >= stale_before:
        return
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before), pk=api_key.pk
    ).update(last_used_at=now)
    api_key.last_used_at = _touched[api_key.prefix] = now
    if len(_touched) > 100_000:
        _touched.clear()
