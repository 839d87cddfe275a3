"""The self-service page: a signed-in person's budgets, usage, teams and API keys. Thin views
over the services and selectors the REST API uses; no rule of their own."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import quotas, selectors, services
from llm.selectors import usage_report
from project.errors import DomainError
from selfservice.forms import ApiKeyCreateForm, PasswordSignInForm

USAGE_DAYS = 30


def sign_in_options() -> dict:
    return {
        "password_enabled": settings.PASSWORD_SIGNIN_ENABLED,
        "sso_enabled": bool(settings.OIDC_ISSUER),
        "sso_name": settings.OIDC_PROVIDER_NAME,
    }


class SignInView(auth_views.LoginView):
    template_name = "selfservice/login.html"
    authentication_form = PasswordSignInForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), **sign_in_options()}


def _overview(request: HttpRequest, *, form=None, issued=None, status: int = 200) -> HttpResponse:
    user = request.user
    keys = list(selectors.api_key_list(owner=user))
    budgets = quotas.budgets_of(user=user, api_key_ids=[key.pk for key in keys])
    today = timezone.now().date()
    usage = usage_report(user_id=user.pk, since=today - timedelta(days=USAGE_DAYS - 1), until=today)
    context = {
        "keys": keys,
        "key_budgets": {key.pk: budgets.get(key.pk, []) for key in keys},
        "budgets": budgets[None],
        "usage": usage,
        "usage_days": USAGE_DAYS,
        "form": form or ApiKeyCreateForm(),
        "issued": issued,
        "now": timezone.now(),
        **sign_in_options(),
    }
    response = render(request, "selfservice/overview.html", context, status=status)
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the secret is on this page, once
    return response


@never_cache
@login_required
@require_http_methods(["GET"])
def overview(request: HttpRequest) -> HttpResponse:
    return _overview(request)


@never_cache
@login_required
@require_POST
def api_key_create(request: HttpRequest) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _overview(request, form=form, status=400)
    try:
        issued = services.api_key_create(
            owner=request.user, name=form.cleaned_data["name"], expires_at=form.expires_at()
        )
    except DomainError as error:
        form.add_error(None, error.message)
        return _overview(request, form=form, status=400)
    # Rendered, not redirected: the secret is shown on this response only and never stored.
    return _overview(request, issued=issued)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = selectors.api_key_list(owner=request.user).filter(pk=key_id).first()
    if api_key is None:
        raise Http404("No such API key.")  # someone else's key looks the same as none
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"The key {api_key.name} ({api_key.prefix}…) is revoked.")
    return redirect("selfservice:overview")
