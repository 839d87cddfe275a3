"""Who may do what beyond being authenticated."""

from rest_framework import permissions
from rest_framework.request import Request

from accounts.models import ApiKey

JWT_ONLY = [{"jwtAuth": []}]  # the schema's security for operations API keys cannot call


class SignedInPerson(permissions.BasePermission):
    """Credential management needs a person signed in with a JWT, not an API key: a leaked
    key cannot mint more keys or change the password, so revoking it ends the access."""

    message = (
        "Sign in with your password (a JWT access token) to manage API keys or change the "
        "password; an API key cannot."
    )
    code = "jwt_required"

    def has_permission(self, request: Request, view) -> bool:
        return not isinstance(request.auth, ApiKey)
