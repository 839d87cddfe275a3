from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import BudgetStatusSerializer
from accounts.models import ApiKey
from teams.models import Membership, Team, TeamRole


class TeamSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in the team.")
    is_default = serializers.SerializerMethodField(
        help_text="Your calls are charged to this team when they name none."
    )
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Team
        fields = ["id", "slug", "name", "role", "is_default", "member_count", "created_at"]
        read_only_fields = fields

    def _mine(self, team: Team) -> Membership | None:
        mine = getattr(team, "my_membership", None)
        return mine[0] if mine else None

    @extend_schema_field(serializers.ChoiceField(choices=TeamRole.choices))
    def get_role(self, team: Team) -> str | None:
        mine = self._mine(team)
        return mine.role if mine else None

    def get_is_default(self, team: Team) -> bool:
        mine = self._mine(team)
        return bool(mine and mine.is_default)


class TeamUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150)


class MemberSerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)
    is_active = serializers.BooleanField(source="user.is_active", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "email", "name", "is_active", "role", "created_at"]
        read_only_fields = fields


class MemberAddSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=TeamRole.choices, default=TeamRole.MEMBER)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=TeamRole.choices)


class TeamApiKeySerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField(
        help_text="`service`: owned by the team, keeps working when its creator leaves; "
        "`personal`: a member's key scoped to the team."
    )
    owner = serializers.SerializerMethodField(help_text="The member a personal key belongs to.")
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "kind",
            "owner",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["service", "personal"]))
    def get_kind(self, key: ApiKey) -> str:
        return "service" if key.owner_id == self.context["team"].service_user_id else "personal"

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_owner(self, key: ApiKey) -> str | None:
        return None if self.get_kind(key) == "service" else key.owner.email

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_created_by(self, key: ApiKey) -> str | None:
        creator = key.team_scope.created_by
        return creator.email if creator else None


class TeamApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(
        choices=["service", "personal"],
        default="personal",
        help_text="`service` (team admins only): a key owned by the team; `personal`: your own "
        "key, charged to this team, that stops working for it if you leave.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class TeamApiKeyCreatedSerializer(TeamApiKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The secret. Shown only in this response."
    )

    class Meta(TeamApiKeySerializer.Meta):
        fields = [*TeamApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class TeamBudgetSerializer(BudgetStatusSerializer):
    scope = serializers.ChoiceField(
        choices=["team", "team_member"],
        read_only=True,
        help_text="`team`: the team's own cap (set by staff); `team_member`: one member's cap "
        "within the team.",
    )
    user = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The member, for a `team_member` budget."
    )


class MemberBudgetSetSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="The member's user id.")
    period = serializers.ChoiceField(choices=["daily", "monthly", "lifetime"])
    limit_usd = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True, default=None
    )
    limit_tokens = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, default=None
    )
