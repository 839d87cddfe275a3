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
from project.errors import DomainError, NotFound
from selfservice.forms import ApiKeyCreateForm, PasswordSignInForm, TeamMemberAddForm
from teams import selectors as teams_selectors
from teams import services as teams_services
from teams.models import TeamRole

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
    key_teams = teams_selectors.team_scoped_key_ids(api_key_ids=[key.pk for key in keys])
    for key in keys:
        key.charged_team = key_teams.get(key.pk)  # shown beside the key
    teams = list(teams_selectors.team_list_for_user(user=user))
    administered = [
        {
            "team": team,
            "members": list(teams_selectors.team_members(team=team)),
            "keys": list(teams_selectors.team_api_keys(team=team)),
            "budgets": teams_selectors.team_budgets(team=team),
            "add_form": TeamMemberAddForm(prefix=team.slug),
        }
        for team in teams
        if team.my_membership and team.my_membership[0].role == TeamRole.ADMIN
    ]
    context = {
        "teams": teams,
        "administered": administered,
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
    # never_cache on the views: a page holding a new secret must not be stored anywhere.
    return render(request, "selfservice/overview.html", context, status=status)


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


def _admin_team(request: HttpRequest, slug: str):
    """The team ``slug`` if the signed-in person administers it; another team is a 404."""
    try:
        return teams_selectors.team_for_admin(user=request.user, team=slug)
    except DomainError as error:
        raise Http404(error.message) from None


@login_required
@require_POST
def team_member_add(request: HttpRequest, slug: str) -> HttpResponse:
    team = _admin_team(request, slug)
    form = TeamMemberAddForm(request.POST, prefix=team.slug)
    if not form.is_valid():
        messages.error(request, "Give the new member's email address and a role.")
        return redirect("selfservice:overview")
    member = selectors.user_by_email(email=form.cleaned_data["email"])
    if member is None:
        messages.error(
            request, "No Parley account has this email yet: they sign in once, then add them."
        )
        return redirect("selfservice:overview")
    try:
        teams_services.membership_add(team=team, user=member, role=form.cleaned_data["role"])
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{member.email} joined {team.name}.")
    return redirect("selfservice:overview")


@login_required
@require_POST
def team_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    team = _admin_team(request, slug)
    try:
        membership = teams_selectors.team_member(team=team, user_id=user_id)
    except NotFound as error:
        raise Http404(error.message) from None
    try:
        revoked = teams_services.membership_remove(membership=membership)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"{membership.user.email} left {team.name}; {revoked} of their keys for it revoked.",
        )
    return redirect("selfservice:overview")


@login_required
@require_POST
def team_api_key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    team = _admin_team(request, slug)
    try:
        api_key = teams_selectors.team_api_key(team=team, api_key_id=key_id)
    except NotFound as error:
        raise Http404(error.message) from None
    teams_services.team_api_key_revoke(api_key=api_key)
    messages.success(request, f"The team key {api_key.name} ({api_key.prefix}…) is revoked.")
    return redirect("selfservice:overview")
