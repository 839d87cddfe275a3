"""JWTs: simplejwt's token classes with their user claim checked, and the refresh-token
blacklist. Everything that knows about JWTs lives in the API layer."""

import re
from typing import Any

from django.utils import timezone
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import User

# User ids are BigAutoField values: positive and within a signed 64-bit integer. simplejwt
# writes them as decimal strings; older tokens may hold the integer.
MAX_USER_ID = 2**63 - 1
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


def user_id_claim_valid(value: Any) -> bool:
    # ``type(...) is int`` refuses True and 1.5, which the ORM would read as user 1.
    if type(value) is str and _CANONICAL_ID.fullmatch(value):
        value = int(value)
    return type(value) is int and 0 < value <= MAX_USER_ID


class _UserClaimChecked:
    """A token whose user claim is not an id (a list, an object, a float, out of range) is an
    invalid token (401), never a lookup that fails with a 500."""

    payload: dict

    def verify(self) -> None:
        super().verify()  # type: ignore[misc]
        if not user_id_claim_valid(self.payload.get(api_settings.USER_ID_CLAIM)):
            raise TokenError("Token has no valid user identification.")


class AccessToken(_UserClaimChecked, tokens.AccessToken):
    pass


class RefreshToken(_UserClaimChecked, tokens.RefreshToken):
    access_token_class = AccessToken


class UntypedToken(_UserClaimChecked, tokens.UntypedToken):
    pass


def user_refresh_tokens_revoke(user: User) -> int:
    """Blacklist every unexpired refresh token issued to ``user`` (rotated ones included).
    Returns how many. Registered as ``accounts.services``' session revoker."""
    outstanding = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now()).exclude(
        blacklistedtoken__isnull=False
    )
    blacklisted = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(blacklisted, ignore_conflicts=True)
    return len(blacklisted)
