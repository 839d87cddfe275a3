"""Team admins manage their own team here: members and roles, the keys charged to the team,
and member budgets within the team's. A team the caller is not in answers 404 whatever its
id; a plain member gets 403 ``team_admin_required`` on admin-only operations. Staff manage
every team in the admin. Writes need a JWT (an API key cannot manage a team)."""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.permissions import JWT_ONLY, SignedInPerson
from accounts.models import User
from project.errors import InvalidInput, NotAllowed
from project.money import micros
from teams import selectors, services
from teams.api import serializers
from teams.models import TeamRole

TAG = ["teams"]


class _Paginated(viewsets.GenericViewSet):
    def paginated(self, rows, serializer_class, **context) -> Response:
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(
            serializer_class(page, many=True, context={"request": self.request, **context}).data
        )


class _TeamScoped(_Paginated):
    permission_classes = [permissions.IsAuthenticated, SignedInPerson]

    def admin_team(self):
        return selectors.team_for_admin(user=self.request.user, team=self.kwargs["team_pk"])


class TeamViewSet(_Paginated):
    """The caller's teams."""

    serializer_class = serializers.TeamSerializer

    def get_permissions(self):
        if self.action == "partial_update":  # managing the team needs the person, not a key
            return [permissions.IsAuthenticated(), SignedInPerson()]
        return [permissions.IsAuthenticated()]

    @extend_schema(tags=TAG, summary="Your teams")
    def list(self, request: Request) -> Response:
        return self.paginated(
            selectors.team_list_for_user(user=request.user), serializers.TeamSerializer
        )

    @extend_schema(tags=TAG, summary="One of your teams", responses=serializers.TeamSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        team, _ = selectors.team_for_member(user=request.user, team=pk)
        return Response(serializers.TeamSerializer(self._one(team.pk)).data)

    @extend_schema(
        tags=TAG,
        summary="Rename your team (team admins)",
        request=serializers.TeamUpdateSerializer,
        responses=serializers.TeamSerializer,
        auth=JWT_ONLY,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        team = selectors.team_for_admin(user=request.user, team=pk)
        data = serializers.TeamUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.team_update(team=team, **data.validated_data)
        return Response(serializers.TeamSerializer(self._one(team.pk)).data)

    @extend_schema(
        tags=TAG,
        summary="Make this your default team",
        description="Calls that name no team (no `X-Parley-Team` header) are charged to it.",
        request=None,
        responses=serializers.TeamSerializer,
    )
    def make_default(self, request: Request, pk: str) -> Response:
        team, membership = selectors.team_for_member(user=request.user, team=pk)
        services.membership_default_set(membership=membership)
        return Response(serializers.TeamSerializer(self._one(team.pk)).data)

    def _one(self, team_id: int):
        return selectors.team_list_for_user(user=self.request.user).get(pk=team_id)


class MemberViewSet(_TeamScoped):
    serializer_class = serializers.MemberSerializer

    @extend_schema(tags=TAG, summary="The team's members (team admins)", auth=JWT_ONLY)
    def list(self, request: Request, team_pk: str) -> Response:
        members = selectors.team_members(team=self.admin_team())
        return self.paginated(members, serializers.MemberSerializer)

    @extend_schema(
        tags=TAG,
        summary="Add a member (team admins)",
        description="The person must already have a Parley account (by email).",
        request=serializers.MemberAddSerializer,
        responses={201: serializers.MemberSerializer},
        auth=JWT_ONLY,
    )
    def create(self, request: Request, team_pk: str) -> Response:
        team = self.admin_team()
        data = serializers.MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.with_email(data.validated_data["email"]).first()
        if user is None:
            raise InvalidInput(
                "No Parley account has this email; they must sign in once first.",
                code="user_not_found",
                details={"email": ["No account with this email."]},
            )
        membership = services.membership_add(team=team, user=user, role=data.validated_data["role"])
        return Response(
            serializers.MemberSerializer(membership).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        tags=TAG,
        summary="Change a member's role (team admins)",
        request=serializers.MemberUpdateSerializer,
        responses=serializers.MemberSerializer,
        auth=JWT_ONLY,
    )
    def partial_update(self, request: Request, team_pk: str, pk: str) -> Response:
        membership = selectors.team_member(team=self.admin_team(), user_id=pk)
        data = serializers.MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.membership_role_set(membership=membership, role=data.validated_data["role"])
        return Response(serializers.MemberSerializer(membership).data)

    @extend_schema(
        tags=TAG,
        summary="Remove a member (team admins)",
        description="At once: their calls can no longer be charged to the team and their "
        "personal keys scoped to it are revoked. Service keys they created stay with the team.",
        responses={204: None},
        auth=JWT_ONLY,
    )
    def destroy(self, request: Request, team_pk: str, pk: str) -> Response:
        membership = selectors.team_member(team=self.admin_team(), user_id=pk)
        services.membership_remove(membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamApiKeyViewSet(_TeamScoped):
    serializer_class = serializers.TeamApiKeySerializer

    @extend_schema(
        tags=TAG,
        summary="Keys charged to the team (team admins)",
        description="The team's service keys and members' personal keys scoped to the team.",
        auth=JWT_ONLY,
    )
    def list(self, request: Request, team_pk: str) -> Response:
        team = self.admin_team()
        keys = selectors.team_api_keys(team=team)
        return self.paginated(keys, serializers.TeamApiKeySerializer, team=team)

    @extend_schema(
        tags=TAG,
        summary="Create a key charged to the team",
        description="`kind: personal` (any member): your own key, charged to this team. "
        "`kind: service` (team admins): a key owned by the team. The secret is in `key` in "
        "this response only.",
        request=serializers.TeamApiKeyCreateSerializer,
        responses={201: serializers.TeamApiKeyCreatedSerializer},
        auth=JWT_ONLY,
    )
    def create(self, request: Request, team_pk: str) -> Response:
        data = serializers.TeamApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        service = data.validated_data["kind"] == "service"
        if service:
            team = self.admin_team()
        else:
            team, _ = selectors.team_for_member(user=request.user, team=team_pk)
        issued = services.team_api_key_create(
            team=team,
            created_by=request.user,
            name=data.validated_data["name"],
            service=service,
            expires_at=data.validated_data["expires_at"],
        )
        key = selectors.team_api_key(team=team, api_key_id=issued.api_key.pk)
        body = serializers.TeamApiKeySerializer(key, context={"team": team}).data
        return Response(body | {"key": issued.secret}, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=TAG,
        summary="Revoke a key charged to the team",
        description="Team admins revoke any; a member revokes their own personal key.",
        responses={204: None},
        auth=JWT_ONLY,
    )
    def destroy(self, request: Request, team_pk: str, pk: str) -> Response:
        team, membership = selectors.team_for_member(user=request.user, team=team_pk)
        key = selectors.team_api_key(team=team, api_key_id=pk)
        if membership.role != TeamRole.ADMIN and key.owner_id != request.user.pk:
            raise NotAllowed(
                f"Only a team admin of '{team.slug}' may revoke this key.",
                code="team_admin_required",
            )
        services.team_api_key_revoke(api_key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _budget_body(budget, budget_status) -> dict:
    return asdict(budget_status) | {"scope": budget.scope, "user": budget.user_id}


class TeamBudgetViewSet(_TeamScoped):
    serializer_class = serializers.TeamBudgetSerializer

    @extend_schema(
        tags=TAG, summary="The team's budgets and its member budgets (team admins)", auth=JWT_ONLY
    )
    def list(self, request: Request, team_pk: str) -> Response:
        rows = selectors.team_budgets(team=self.admin_team())
        return self.paginated(
            [_budget_body(b, s) for b, s in rows], serializers.TeamBudgetSerializer
        )

    @extend_schema(
        tags=TAG,
        summary="Set a member's budget within the team (team admins)",
        description="Caps what one member may spend of the team's money per period; it cannot "
        "exceed the team's budget of that period (400 `exceeds_team_budget`). Setting it again "
        "changes it. The team's own budget is set by staff.",
        request=serializers.MemberBudgetSetSerializer,
        responses={201: serializers.TeamBudgetSerializer},
        auth=JWT_ONLY,
    )
    def create(self, request: Request, team_pk: str) -> Response:
        team = self.admin_team()
        data = serializers.MemberBudgetSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        membership = selectors.team_member(team=team, user_id=fields.pop("user"))
        limit_usd = fields.pop("limit_usd")
        budget = services.member_budget_set(
            membership=membership,
            limit_micros=micros(limit_usd) if limit_usd is not None else None,
            **fields,
        )
        row = next(r for r in selectors.team_budgets(team=team) if r[0].pk == budget.pk)
        return Response(
            serializers.TeamBudgetSerializer(_budget_body(*row)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        tags=TAG,
        summary="Remove a member's budget (team admins)",
        description="The team's own budgets are staff's: removing one is a 403.",
        responses={204: None},
        auth=JWT_ONLY,
    )
    def destroy(self, request: Request, team_pk: str, pk: str) -> Response:
        budget = selectors.team_budget(team=self.admin_team(), budget_id=pk)
        if budget.user_id is None:
            raise NotAllowed("Only staff change the team's own budget.", code="staff_only")
        services.member_budget_delete(budget=budget)
        return Response(status=status.HTTP_204_NO_CONTENT)
