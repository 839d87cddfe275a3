"""Sign-ins through Django's auth (the admin's login form, and any ``authenticate`` call such
as the JWT token endpoint's) recorded as security events."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed

from audit.services import audit_record


def _signed_in(sender, request, user, **kwargs: Any) -> None:
    # The single sign-on callback marks its request (sso.views); other logins are passwords.
    method = getattr(request, "sign_in_method", "session")
    audit_record(action="auth.sign_in", target=user, actor=user, data={"method": method})


def _sign_in_failed(sender, credentials: dict, request=None, **kwargs: Any) -> None:
    # Django has already replaced the password with asterisks; keep only who was tried.
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit_record(
        action="auth.sign_in_failed",
        target_type="accounts.user",
        target_repr=email,
        data={"email": email, "method": "password"},
    )


def connect() -> None:
    user_logged_in.connect(_signed_in, dispatch_uid="audit.sign_in")
    user_login_failed.connect(_sign_in_failed, dispatch_uid="audit.sign_in_failed")
