"""Describes API-key authentication to drf-spectacular (JWT is described by simplejwt)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "prl_<prefix>_<secret>",
            "description": "A long-lived API key created at /api/v1/auth/api-keys/, sent as a bearer token.",
        }


class ParleyJWTScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from /api/v1/auth/token/.",
        }
