"""Password sign-in, for the admin, the self-service page and ``auth/token/`` alike."""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend


class PasswordBackend(ModelBackend):
    """Django's email-and-password check, answering no one while ``PASSWORD_SIGNIN_ENABLED``
    is false: every password form and the token endpoint go through ``authenticate()``, so this
    one switch closes them all."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not settings.PASSWORD_SIGNIN_ENABLED:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
