"""Reads for accounts."""

import hmac

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import API_KEY_PREFIX, api_key_hash
from project.hotcache import HotCache, fresh

# Who a credential belongs to, per process; any save or delete of a user or a key (revoking,
# deactivating) invalidates it in every process at once (project.hotcache, accounts.apps).
AUTH = "auth"
_keys_by_prefix: HotCache[ApiKey | None] = HotCache(AUTH)
_users_by_id: HotCache[User | None] = HotCache(AUTH)
_keys_existing: HotCache[bool] = HotCache(AUTH)


def user_by_email(*, email: str) -> User | None:
    """The active account with this email (any letter case), else None."""
    return User.objects.with_email(email.strip()).filter(is_active=True).first()


def api_key_list(*, owner: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner=owner)


def api_key_usable(*, secret: str) -> ApiKey | None:
    """The active, unexpired, unrevoked key matching ``secret``, else None."""
    if not secret.startswith(API_KEY_PREFIX):
        return None
    prefix = secret[len(API_KEY_PREFIX) :].split("_", 1)[0]
    api_key = fresh(
        _keys_by_prefix.get(
            prefix, lambda: ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
        )
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, api_key_hash(secret)):
        return None
    if api_key.revoked_at is not None:
        return None
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        return None
    if not api_key.owner.is_active:
        return None
    return api_key


def api_key_exists(*, api_key_id: int) -> bool:
    """Whether the key ``api_key_id`` still exists, revoked or not (staff can delete one),
    from the per-process cache: deleting a key makes every process forget the answer."""
    return _keys_existing.get(api_key_id, lambda: ApiKey.objects.filter(pk=api_key_id).exists())


def user_by_id(*, user_id: int) -> User | None:
    """The user with ``user_id`` (active or not), from the per-process cache (JWT requests)."""
    return fresh(_users_by_id.get(user_id, lambda: User.objects.filter(pk=user_id).first()))
