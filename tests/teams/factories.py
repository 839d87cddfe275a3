import itertools

from teams.models import Team, TeamRole
from teams.services import membership_add, team_create

_numbers = itertools.count()


def make_team(*, admins=(), members=(), slug: str | None = None) -> Team:
    """A team made the way staff make one (teams.services), with these users in it."""
    n = next(_numbers)
    team = team_create(name=f"Team {n}", slug=slug or f"team-{n}")
    for user in admins:
        membership_add(team=team, user=user, role=TeamRole.ADMIN)
    for user in members:
        membership_add(team=team, user=user, role=TeamRole.MEMBER)
    return team
