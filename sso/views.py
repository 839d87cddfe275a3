"""The two browser endpoints of single sign-on: go to the provider, and come back from it.
Any refusal shows a page that says why, and leaves nobody signed in."""

import logging

import requests
from django.conf import settings
from django.contrib import auth
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from project.errors import DomainError, Unavailable
from sso import services
from sso.discovery import provider_metadata

logger = logging.getLogger(__name__)

STALE_SIGN_IN = "This sign-in has expired or was started in another browser; please sign in again."


def refused(
    request: HttpRequest, message: str, *, code: str, status: int = 403, email: str = ""
) -> HttpResponse:
    # Flushes the session whoever holds it: a refused sign-in leaves no session at all, not
    # an older signed-in one, not the sign-in's own state.
    auth.logout(request)
    logger.info("sso sign-in refused", extra={"code": code})
    services.sso_refusal_record(code=code, email=email)
    return render(request, "sso/refused.html", {"message": message, "code": code}, status=status)


def _domain_refusal(request: HttpRequest, error: DomainError) -> HttpResponse:
    email = error.details.get("email", "") if isinstance(error.details, dict) else ""
    return refused(
        request,
        error.message,
        code=error.code,
        status=503 if isinstance(error, Unavailable) else 403,
        email=email,
    )


class SignInView(OIDCAuthenticationRequestView):
    """Redirects to the provider's authorization endpoint with state, nonce and a PKCE
    challenge (S256) kept in the session."""

    def __init__(self, **kwargs) -> None:
        View.__init__(self, **kwargs)  # the endpoint comes from discovery, per request

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured.")
        try:
            metadata = provider_metadata()
        except DomainError as error:
            return _domain_refusal(request, error)
        self.OIDC_OP_AUTH_ENDPOINT = metadata.authorization_endpoint
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured.")
        request.sign_in_method = "oidc"  # for the audit log's sign-in record
        try:
            return super().get(request)
        except DomainError as error:
            return _domain_refusal(request, error)
        except SuspiciousOperation:
            # The library's own refusal: a state this browser's session did not start.
            logger.warning("sso callback refused by the library", exc_info=True)
            return refused(request, STALE_SIGN_IN, code="sso_state_unknown")
        except requests.RequestException:
            logger.warning("sso token exchange failed", exc_info=True)
            return refused(
                request,
                "The identity provider did not complete the sign-in; please try again.",
                code="sso_token_exchange_failed",
            )

    def login_failure(self) -> HttpResponse:
        description = self.request.GET.get("error_description") or self.request.GET.get("error")
        if description:
            return refused(
                self.request,
                f"The identity provider refused the sign-in: {description[:200]}",
                code="sso_provider_refused",
            )
        return refused(self.request, STALE_SIGN_IN, code="sso_incomplete")
