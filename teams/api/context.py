"""The team a REST request is charged to, resolved once per request."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from accounts.api.authentication import request_api_key
from teams.models import Team
from teams.selectors import TEAM_HEADER, team_for_call

TEAM_HEADER_PARAMETER = OpenApiParameter(
    TEAM_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The team (id or slug) to charge this call to; you must be a member. Without "
    "it, your default team. Ignored in favour of the key's team for an API key scoped to a "
    "team (naming another team is a 403).",
)

_UNSET = object()


def request_team(request: Request) -> Team | None:
    """The team ``request`` is charged to (see ``teams.selectors.team_for_call``); raises
    ``NotFound`` / ``NotAllowed`` for a team the caller cannot charge."""
    cached = getattr(request, "_parley_team", _UNSET)
    if cached is _UNSET:
        cached = team_for_call(
            user=request.user,
            api_key=request_api_key(request),
            requested=request.headers.get(TEAM_HEADER),
        )
        request._parley_team = cached
    return cached
