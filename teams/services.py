"""Writes for teams: teams, memberships, team-scoped API keys and member budgets. The REST API
(team admins) and the admin (staff) both call these; who may call which is the caller's check
(``teams.selectors.team_for_admin`` for the API, staff rights in the admin)."""

import uuid
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import ApiKey, User
from accounts.services import IssuedApiKey, api_key_create, api_key_revoke, user_deactivate
from audit.services import audit_record
from budgets.models import Budget
from budgets.services import budget_delete, budget_set
from project.errors import Conflict, InvalidInput, NotAllowed
from project.hotcache import bump
from project.money import usd
from teams.models import Membership, Team, TeamApiKey, TeamRole
from teams.selectors import TEAMS

SERVICE_EMAIL_DOMAIN = "service.parley.invalid"  # .invalid: never a real mailbox or IdP login


def _is_service_account(user: User) -> bool:
    return user.email.endswith(f"@{SERVICE_EMAIL_DOMAIN}")


@transaction.atomic
def team_create(*, name: str, slug: str) -> Team:
    """A team with no members yet, and its service account (owner of the team's service keys:
    no password, no default user budget, in no team). ``slug`` must be free."""
    if Team.objects.filter(slug=slug).exists():
        raise InvalidInput(f"The slug '{slug}' is taken.", code="slug_taken")
    service_user = User.objects.create_user(
        email=f"team-{uuid.uuid4().hex[:16]}@{SERVICE_EMAIL_DOMAIN}",
        password=None,
        name=f"{name} (team service account)"[:150],
    )
    # The team's budgets cap its service keys; a default per-user budget would cap them too.
    Budget.objects.filter(user=service_user, team__isnull=True).delete()
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slug, service_user=service_user)
    except IntegrityError:  # lost a race for the slug
        raise InvalidInput(f"The slug '{slug}' is taken.", code="slug_taken") from None
    audit_record(action="team.created", target=team, data={"name": name, "slug": slug})
    return team


def team_update(*, team: Team, name: str | None = None) -> Team:
    if name is not None and name != team.name:
        before, team.name = team.name, name
        team.save(update_fields=["name"])
        audit_record(action="team.updated", target=team, changes={"name": (before, name)})
    return team


@transaction.atomic
def team_delete(*, team: Team) -> None:
    """Delete a team: its service keys are revoked and its service account deactivated first
    (a service key without its team would otherwise keep working, charged to no team);
    members' keys scoped to it are revoked. Usage rows keep their numbers, without the team."""
    for key in ApiKey.objects.filter(team_scope__team=team, revoked_at__isnull=True):
        api_key_revoke(api_key=key)
    user_deactivate(user=team.service_user)
    audit_record(action="team.deleted", target=team, data={"slug": team.slug})
    team.delete()


def _admins_left(team: Team, *, without: Membership) -> int:
    return (
        Membership.objects.select_for_update()
        .filter(team=team, role=TeamRole.ADMIN)
        .exclude(pk=without.pk)
        .count()
    )


@transaction.atomic
def membership_add(*, team: Team, user: User, role: str = TeamRole.MEMBER) -> Membership:
    """Put ``user`` in ``team`` with ``role``. It becomes their default team if they had none.
    A team's service account and inactive users cannot be added; a member twice is a
    ``Conflict``."""
    if role not in TeamRole.values:
        raise InvalidInput(f"Unknown role '{role}'; use member or admin.", code="invalid_role")
    if _is_service_account(user) or not user.is_active:
        raise InvalidInput("This account cannot join a team.", code="user_not_eligible")
    has_default = Membership.objects.filter(user=user, is_default=True).exists()
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                team=team, user=user, role=role, is_default=not has_default
            )
            audit_record(
                action="team.member_added",
                target=team,
                data={"user_id": user.pk, "email": user.email, "role": role},
            )
            return membership
    except IntegrityError:
        raise Conflict(
            f"{user.email} is already in team '{team.slug}'.", code="already_member"
        ) from None


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str) -> Membership:
    """Change a member's role. The last admin of a team cannot step down (someone must be
    left to manage it); staff can always change roles in the admin."""
    if role not in TeamRole.values:
        raise InvalidInput(f"Unknown role '{role}'; use member or admin.", code="invalid_role")
    if (
        membership.role == TeamRole.ADMIN
        and role != TeamRole.ADMIN
        and not _admins_left(membership.team, without=membership)
    ):
        raise Conflict("A team needs at least one team admin.", code="last_team_admin")
    before = Membership.objects.filter(pk=membership.pk).values_list("role", flat=True).first()
    membership.role = role
    membership.save(update_fields=["role"])
    if before != role:
        audit_record(
            action="team.member_role_changed",
            target=membership.team,
            changes={"role": (before, role)},
            data={"user_id": membership.user_id},
        )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, keep_last_admin: bool = True) -> int:
    """Take a user out of a team, with immediate effect: their calls can no longer be charged
    to it and their personal keys scoped to it are revoked (returned: how many). Team service
    keys they created stay with the team and keep working. Their default team moves to their
    oldest remaining team, if any. ``keep_last_admin``: refuse to remove the last admin."""
    if (
        keep_last_admin
        and membership.role == TeamRole.ADMIN
        and not _admins_left(membership.team, without=membership)
    ):
        raise Conflict("A team needs at least one team admin.", code="last_team_admin")
    user, team = membership.user, membership.team
    revoked = 0
    for key in ApiKey.objects.filter(owner=user, team_scope__team=team, revoked_at__isnull=True):
        api_key_revoke(api_key=key)
        revoked += 1
    was_default = membership.is_default
    membership.delete()
    audit_record(
        action="team.member_removed",
        target=team,
        data={"user_id": user.pk, "email": user.email, "personal_keys_revoked": revoked},
    )
    if was_default:
        successor = Membership.objects.filter(user=user).order_by("created_at", "pk").first()
        if successor is not None:
            Membership.objects.filter(pk=successor.pk).update(is_default=True)
            bump(TEAMS)  # a bulk update sends no signal (teams.selectors caches memberships)
    return revoked


@transaction.atomic
def membership_default_set(*, membership: Membership) -> Membership:
    """Make ``membership``'s team the one its user's calls are charged to by default."""
    Membership.objects.filter(user_id=membership.user_id, is_default=True).exclude(
        pk=membership.pk
    ).update(is_default=False)
    bump(TEAMS)  # a bulk update sends no signal (teams.selectors caches memberships)
    membership.is_default = True
    membership.save(update_fields=["is_default"])
    return membership


@transaction.atomic
def team_api_key_create(
    *,
    team: Team,
    created_by: User,
    name: str,
    service: bool,
    expires_at: datetime | None = None,
) -> IssuedApiKey:
    """A key that charges ``team``. ``service``: a team service key, owned by the team's
    service account, so it keeps working when ``created_by`` leaves (only a team admin should
    be let to make one). Otherwise a personal key of ``created_by`` scoped to the team, which
    stops working for the team when they leave it. The secret is in the result, once."""
    if not service and not Membership.objects.filter(team=team, user=created_by).exists():
        raise NotAllowed(
            f"Only a member of '{team.slug}' can have a key scoped to it.", code="not_a_member"
        )
    owner = team.service_user if service else created_by
    issued = api_key_create(owner=owner, name=name, expires_at=expires_at)
    TeamApiKey.objects.create(api_key=issued.api_key, team=team, created_by=created_by)
    audit_record(
        action="team.api_key_created",
        target=team,
        data={
            "api_key_id": issued.api_key.pk,
            "prefix": issued.api_key.prefix,
            "kind": "service" if service else "personal",
            "created_by": created_by.pk,
        },
    )
    return issued


def team_api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key charged to a team (safe to call twice)."""
    return api_key_revoke(api_key=api_key)


def _team_budget_exceeded(
    team: Team, period: str, limit_micros: int | None, limit_tokens: int | None
) -> str | None:
    team_budget = Budget.objects.filter(team=team, user__isnull=True, period=period).first()
    if team_budget is None:
        return None
    if team_budget.limit_micros is not None and (
        limit_micros is None or limit_micros > team_budget.limit_micros
    ):
        return f"${usd(team_budget.limit_micros)}"
    if team_budget.limit_tokens is not None and (
        limit_tokens is None or limit_tokens > team_budget.limit_tokens
    ):
        return f"{team_budget.limit_tokens} tokens"
    return None


@transaction.atomic
def member_budget_set(
    *,
    membership: Membership,
    period: str,
    limit_micros: int | None = None,
    limit_tokens: int | None = None,
) -> Budget:
    """Cap (in micro-dollars and/or tokens) what one member may spend of the team's money per ``period`` (their calls charged
    to the team; the team's own budget still applies). It cannot exceed the team's budget of
    the same period in either measure, nor leave a measure uncapped that the team caps."""
    team = membership.team
    Team.objects.select_for_update().filter(pk=team.pk).first()  # vs. a concurrent team cap change
    exceeded = _team_budget_exceeded(team, period, limit_micros, limit_tokens)
    if exceeded is not None:
        raise InvalidInput(
            f"A member budget cannot exceed the team's {period} budget ({exceeded}).",
            code="exceeds_team_budget",
        )
    budget = budget_set(
        user=membership.user,
        team=team,
        period=period,
        limit_micros=limit_micros,
        limit_tokens=limit_tokens,
    )
    audit_record(
        action="team.member_budget_set",
        target=team,
        data={
            "user_id": membership.user_id,
            "period": period,
            "limit_usd": usd(budget.limit_micros) if budget.limit_micros is not None else None,
            "limit_tokens": budget.limit_tokens,
        },
    )
    return budget


@transaction.atomic
def member_budget_delete(*, budget: Budget) -> None:
    audit_record(
        action="team.member_budget_removed",
        target_type="teams.team",
        target_id=str(budget.team_id),
        data={"user_id": budget.user_id, "period": budget.period},
    )
    budget_delete(budget=budget)
