"""Who the identity provider may let in, and what their groups give them. Called by the OIDC
backend at every single sign-on, after the ID token has been checked."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts import services as accounts_services
from accounts.models import User
from audit.services import audit_record
from project.errors import Conflict, SignInRefused
from teams import services as teams_services
from teams.models import Membership, Team

logger = logging.getLogger(__name__)

TEAM_ROLES = ("member", "admin")


@dataclass(frozen=True, slots=True)
class TeamGrant:
    team_slug: str
    role: str  # "member" or "admin"


def claim_groups(claims: dict) -> list[str]:
    """The groups the provider lists under ``OIDC_GROUPS_CLAIM`` (a list of strings, or one
    string); anything else counts as no groups."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [group for group in value if isinstance(group, str)]
    return []


def team_grants(groups: Iterable[str]) -> dict[str, str]:
    """The teams (slug → role) ``OIDC_GROUP_TEAMS`` gives these groups; admin wins when two
    groups map to the same team. Pure: reads only the setting."""
    grants: dict[str, str] = {}
    for group in groups:
        target = settings.OIDC_GROUP_TEAMS.get(group)
        if not target:
            continue
        slug, _, role = target.partition(":")
        role = "admin" if role == "admin" else "member"
        if grants.get(slug) != "admin":
            grants[slug] = role
    return grants


def sign_in_refusal(*, email: str, groups: list[str]) -> SignInRefused | None:
    """Why the allow-lists refuse this person, or None. ``details`` names the email, for the
    audit log."""
    domain = email.rpartition("@")[2].lower()
    allowed_domains = [d.lower().lstrip("@") for d in settings.OIDC_ALLOWED_EMAIL_DOMAINS]
    if allowed_domains and domain not in allowed_domains:
        return SignInRefused(
            f"Email addresses at {domain} may not sign in to Parley.",
            code="sso_domain_not_allowed",
            details={"email": email},
        )
    allowed_groups = settings.OIDC_ALLOWED_GROUPS
    if allowed_groups and not set(groups) & set(allowed_groups):
        return SignInRefused(
            "Your identity provider does not list you in a group allowed to use Parley.",
            code="sso_group_not_allowed",
            details={"email": email},
        )
    return None


def sso_refusal_record(*, code: str, email: str = "") -> None:
    """A refused single sign-on in the audit log, as a failed sign-in with its reason."""
    audit_record(
        action="auth.sign_in_failed",
        target_type="accounts.user",
        target_repr=email[:254],
        data={"email": email[:254], "method": "oidc", "reason": code},
    )


def sso_teams_sync(*, user: User, groups: list[str]) -> dict[str, str]:
    """Bring ``user``'s memberships of the teams named in ``OIDC_GROUP_TEAMS`` in line with
    their groups: join (as member or team admin), change role, leave. The identity provider
    is authoritative for these teams, so leaving goes through even for a team's last admin;
    teams the setting does not name are left to team admins. A named team that does not exist
    is skipped (staff create teams). Returns the grants (slug → role) now in force."""
    grants = team_grants(groups)
    named = {target.partition(":")[0] for target in settings.OIDC_GROUP_TEAMS.values()}
    teams = {team.slug: team for team in Team.objects.filter(slug__in=named)}
    memberships = {
        membership.team.slug: membership
        for membership in Membership.objects.select_related("team").filter(
            user=user, team__slug__in=named
        )
    }
    for slug, team in teams.items():
        membership, role = memberships.get(slug), grants.get(slug)
        if role is None and membership is not None:
            teams_services.membership_remove(membership=membership, keep_last_admin=False)
        elif role is not None and membership is None:
            teams_services.membership_add(team=team, user=user, role=role)
        elif role is not None and membership.role != role:
            try:
                teams_services.membership_role_set(membership=membership, role=role)
            except Conflict:
                # The team's last admin stays one until another admin exists.
                logger.warning("sso kept the last team admin", extra={"team": slug})
    return {slug: role for slug, role in grants.items() if slug in teams}


def sso_sign_in(*, claims: dict) -> User:
    """The user a checked sign-in lets in, created on their first one. Refused (and, when
    they have an account, offboarded: keys revoked, sessions ended) when the email domain or
    groups are not allowed; refused when staff deactivated the account."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused(
            "The identity provider did not send an email address.", code="sso_no_email"
        )
    if claims.get("email_verified") is False:
        raise SignInRefused(
            "The identity provider has not verified this email address.",
            code="sso_email_unverified",
        )
    groups = claim_groups(claims)
    existing = User.objects.with_email(email).first()
    refusal = sign_in_refusal(email=email, groups=groups)
    if refusal is not None:
        if existing is not None and existing.is_active:
            revoked = accounts_services.user_access_end(user=existing)
            logger.info(
                "sso offboarded",
                extra={"user_id": existing.pk, "reason": refusal.code, "keys_revoked": revoked},
            )
        raise refusal
    with transaction.atomic():
        user, _ = accounts_services.user_get_or_create_signed_on(
            email=email, name=claims.get("name") if isinstance(claims.get("name"), str) else ""
        )
        if not user.is_active:
            raise SignInRefused(
                "This account has been deactivated; ask staff to reactivate it.",
                code="account_inactive",
                details={"email": user.email},
            )
        sso_teams_sync(user=user, groups=groups)
    return user
