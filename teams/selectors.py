"""Reads for teams: which team a call is charged to, a user's teams, what a team admin sees.

How a call's team is chosen (the README's "Teams" section says the same for users):

1. An API key scoped to a team (``TeamApiKey``) always charges that team: a team service key,
   or a member's personal key scoped to it, which works for the team only while its owner is
   still a member. ``X-Parley-Team``, if sent, must name that same team.
2. Otherwise (a JWT, or a personal key scoped to no team) the ``X-Parley-Team`` header names
   the team by id or slug, and the caller must be a member (else 404 ``team_not_found``, the
   same answer whether the team exists or not).
3. Without the header, the caller's default team; with no default team, no team at all."""

import re

from django.db.models import Count, F, OuterRef, Prefetch, QuerySet, Subquery

from accounts.models import ApiKey, User
from accounts.quotas import BudgetStatus
from budgets.models import Budget
from budgets.selectors import budget_statuses_of
from project.errors import NotAllowed, NotFound
from project.hotcache import HotCache, fresh
from teams.models import Membership, Team, TeamApiKey, TeamRole

TEAM_HEADER = "X-Parley-Team"

# What ``team_for_call`` reads on every call, per process (project.hotcache): the team a key
# is scoped to, and a user's memberships with their teams. Any save or delete of a team, a
# membership or a key's scope invalidates both in every process at once (teams.apps); the
# services' bulk updates bump the namespace themselves.
TEAMS = "teams"
_key_scopes: HotCache[Team | None] = HotCache(TEAMS)
_memberships: HotCache[tuple[Membership, ...]] = HotCache(TEAMS)
_teams_existing: HotCache[bool] = HotCache(TEAMS)


MAX_DB_ID = 2**63 - 1
_SLUG = re.compile(r"[-\w]{1,100}", re.ASCII)


def _db_id(value: int | str) -> int | None:
    """``value`` as a primary key, or None when it cannot be one (not plain ASCII digits, or
    beyond a 64-bit column: PostgreSQL would refuse to compare with it)."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_DB_ID else None


def _naming(requested: str, prefix: str = "") -> dict:
    """A team lookup by id (all digits) or slug, under ``prefix`` (e.g. ``team__``); a value
    that is neither matches nothing (without asking the database)."""
    requested = requested.strip()
    if (team_id := _db_id(requested)) is not None:
        return {f"{prefix}pk": team_id}
    if _SLUG.fullmatch(requested):
        return {f"{prefix}slug": requested}
    return {f"{prefix}pk__in": []}


def _not_a_member(requested: str) -> NotFound:
    return NotFound(
        f"You are not a member of a team '{requested}'. GET /api/v1/teams/ lists your teams.",
        code="team_not_found",
    )


def _scoped_team(api_key_id: int) -> Team | None:
    """The team the key ``api_key_id`` is scoped to (``TeamApiKey``), else None; cached."""

    def load() -> Team | None:
        scope = TeamApiKey.objects.select_related("team").filter(api_key_id=api_key_id).first()
        return scope.team if scope is not None else None

    return _key_scopes.get(api_key_id, load)


def _memberships_of(user_id: int) -> tuple[Membership, ...]:
    """Every membership of ``user_id``, each with its team; cached."""
    return _memberships.get(
        user_id,
        lambda: tuple(Membership.objects.select_related("team").filter(user_id=user_id)),
    )


def _names(team: Team, requested: str) -> bool:
    """Whether ``requested`` names ``team`` as ``_naming`` would find it: by id (all digits)
    or by slug (compared exactly, as the database does)."""
    naming = _naming(requested)
    if "pk" in naming:
        return team.pk == naming["pk"]
    if "slug" in naming:
        return team.slug == naming["slug"]
    return False


def team_for_call(
    *, user: User, api_key: ApiKey | None, requested: str | None = None
) -> Team | None:
    """The team a call by ``user`` (with ``api_key``, None for a JWT) is charged to, given the
    ``X-Parley-Team`` header's value ``requested`` (None or "" when absent). Raises
    ``NotFound`` for a team the caller is not in, ``NotAllowed`` for a team-scoped key whose
    owner left the team or that is sent with another team's name. Reads the per-process
    caches (no query when warm; at most two to fill them)."""
    requested = (requested or "").strip()
    team = _scoped_team(api_key.pk) if api_key is not None else None
    if team is not None:
        if requested and not _names(team, requested):
            raise NotAllowed(
                f"This API key is scoped to team '{team.slug}'; it cannot be charged to "
                f"'{requested}'. Leave out {TEAM_HEADER} or use a key of that team.",
                code="team_mismatch",
            )
        is_service_key = api_key.owner_id == team.service_user_id
        if not is_service_key and not any(
            membership.team_id == team.pk for membership in _memberships_of(user.pk)
        ):
            raise NotAllowed(
                f"This API key is scoped to team '{team.slug}', which you are no longer a "
                "member of.",
                code="team_membership_ended",
            )
        return fresh(team)
    memberships = _memberships_of(user.pk)
    if requested:
        found = next((m for m in memberships if _names(m.team, requested)), None)
        if found is None:
            raise _not_a_member(requested)
        return fresh(found.team)
    default = next((m for m in memberships if m.is_default), None)
    return fresh(default.team) if default is not None else None


def team_exists(*, team_id: int) -> bool:
    """Whether the team ``team_id`` still exists, from the per-process cache (deleting a team
    makes every process forget the answer)."""
    return _teams_existing.get(team_id, lambda: Team.objects.filter(pk=team_id).exists())


def team_is_member(*, team_id: int, user_id: int) -> bool:
    return Membership.objects.filter(team_id=team_id, user_id=user_id).exists()


def team_list_for_user(*, user: User) -> QuerySet[Team]:
    """The teams ``user`` belongs to, each with ``role``, ``is_default`` and
    ``member_count`` annotated. One query."""
    mine = Membership.objects.filter(user=user)
    # A subquery: counting over the join the membership filter makes would count only ``user``.
    members = (
        Membership.objects.filter(team=OuterRef("pk"))
        .order_by()
        .values("team")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Team.objects.filter(pk__in=mine.values("team_id"))
        .annotate(member_count=Subquery(members))
        .prefetch_related(Prefetch("memberships", queryset=mine, to_attr="my_membership"))
        .order_by("name", "id")
    )


def team_for_member(*, user: User, team: str | int) -> tuple[Team, Membership]:
    """The team ``team`` (id or slug) with ``user``'s membership in it; ``NotFound`` when the
    user is not a member (another team's id answers as if it did not exist)."""
    membership = (
        Membership.objects.select_related("team")
        .filter(user=user)
        .filter(**_naming(str(team), "team__"))
        .first()
    )
    if membership is None:
        raise NotFound(f"No team '{team}' among your teams.", code="team_not_found")
    return membership.team, membership


def team_for_admin(*, user: User, team: str | int) -> Team:
    """The team ``team`` if ``user`` is one of its admins. ``NotFound`` for a team they are
    not in, ``NotAllowed`` for a plain member."""
    found, membership = team_for_member(user=user, team=team)
    if membership.role != TeamRole.ADMIN:
        raise NotAllowed(
            f"Only a team admin of '{found.slug}' may do this.", code="team_admin_required"
        )
    return found


def team_for_usage(*, user: User, team: str | int) -> Team:
    """The team whose usage ``user`` may read: any team for staff, else one they administer
    (``NotFound`` / ``NotAllowed`` as ``team_for_admin``)."""
    if user.is_staff:
        found = Team.objects.filter(**_naming(str(team))).first()
        if found is None:
            raise NotFound(f"No team '{team}'.", code="team_not_found")
        return found
    return team_for_admin(user=user, team=team)


def team_members(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("user__email")


def team_member(*, team: Team, user_id: int | str) -> Membership:
    """``NotFound`` for a user who is not in ``team`` (whoever they are)."""
    membership = None
    if _db_id(user_id) is not None:
        membership = team_members(team=team).filter(user_id=user_id).first()
    if membership is None:
        raise NotFound(f"No member {user_id} in team '{team.slug}'.", code="member_not_found")
    return membership


def team_api_keys(*, team: Team) -> QuerySet[ApiKey]:
    """Every key charged to ``team``: its service keys and members' keys scoped to it, each
    with ``team_scope`` (and its creator) and ``owner`` loaded. One query."""
    return (
        ApiKey.objects.filter(team_scope__team=team)
        .select_related("owner", "team_scope", "team_scope__created_by")
        .order_by("-created_at", "-id")
    )


def team_api_key(*, team: Team, api_key_id: int | str) -> ApiKey:
    key = None
    if _db_id(api_key_id) is not None:
        key = team_api_keys(team=team).filter(pk=api_key_id).first()
    if key is None:
        raise NotFound(f"No API key {api_key_id} in team '{team.slug}'.", code="api_key_not_found")
    return key


def team_scoped_key_ids(*, api_key_ids) -> dict[int, Team]:
    """The team each of ``api_key_ids`` is scoped to (absent: none). One query."""
    return {
        scope.api_key_id: scope.team
        for scope in TeamApiKey.objects.select_related("team").filter(api_key_id__in=api_key_ids)
    }


def team_budgets(*, team: Team) -> list[tuple[Budget, BudgetStatus]]:
    """The team's own budgets and its member budgets, each with where it stands this period.
    Two queries however many."""
    budgets = list(
        Budget.objects.filter(team=team).order_by(F("user_id").asc(nulls_first=True), "period")
    )
    return list(zip(budgets, budget_statuses_of(budgets), strict=True))


def team_budget(*, team: Team, budget_id: int | str) -> Budget:
    budget = None
    if _db_id(budget_id) is not None:
        budget = Budget.objects.filter(team=team, pk=budget_id).first()
    if budget is None:
        raise NotFound(f"No budget {budget_id} in team '{team.slug}'.", code="budget_not_found")
    return budget
