"""``manage.py check`` (run at every start by the image's entrypoint and ``scripts/run``) says
when the sign-in settings cannot work."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def sign_in_settings(app_configs, **kwargs) -> list:
    problems = []
    if settings.OIDC_ISSUER and not (settings.OIDC_RP_CLIENT_ID and settings.OIDC_RP_CLIENT_SECRET):
        problems.append(
            Error(
                "OIDC_ISSUER is set but OIDC_CLIENT_ID or OIDC_CLIENT_SECRET is empty.",
                hint="Register Parley at the identity provider and set both.",
                id="sso.E001",
            )
        )
    if settings.OIDC_ISSUER and not settings.OIDC_ISSUER.startswith(("https://", "http://")):
        problems.append(Error("OIDC_ISSUER must be the provider's https:// URL.", id="sso.E002"))
    if not settings.PASSWORD_SIGNIN_ENABLED and not settings.OIDC_ISSUER:
        problems.append(
            Warning(
                "PASSWORD_SIGNIN_ENABLED is false and single sign-on is not configured: nobody "
                "can sign in to the admin or the self-service page (API keys still work).",
                hint="Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET.",
                id="sso.W001",
            )
        )
    return problems
