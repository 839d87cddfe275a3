from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts.api.tokens import RefreshToken, UntypedToken
from accounts.models import ApiKey, User
from accounts.quotas import budgets_of
from project.api.fields import UsdFromMicrosField


class RegisterSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        write_only=True, max_length=128, style={"input_type": "password"}
    )
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


def _usd(source: str, **kwargs) -> UsdFromMicrosField:
    return UsdFromMicrosField(source=source, read_only=True, **kwargs)


class BudgetStatusSerializer(serializers.Serializer):
    """Where one spend budget stands in its current period. USD amounts are decimal strings;
    a null limit means that dimension is not capped."""

    id = serializers.IntegerField(read_only=True)
    scope = serializers.ChoiceField(choices=["user", "api_key"], read_only=True)
    period = serializers.ChoiceField(choices=["daily", "monthly", "lifetime"], read_only=True)
    limit_usd = _usd("limit_micros", allow_null=True)
    spent_usd = _usd("spent_micros")
    reserved_usd = _usd("reserved_micros", help_text="Held for replies still being written.")
    remaining_usd = _usd("remaining_micros", allow_null=True)
    limit_tokens = serializers.IntegerField(read_only=True, allow_null=True)
    spent_tokens = serializers.IntegerField(read_only=True)
    reserved_tokens = serializers.IntegerField(read_only=True)
    remaining_tokens = serializers.IntegerField(read_only=True, allow_null=True)
    resets_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null for a lifetime budget."
    )


class UserSerializer(serializers.ModelSerializer):
    budgets = serializers.SerializerMethodField(
        help_text="Your spend budgets (a key's own budgets are on the key)."
    )

    class Meta:
        model = User
        fields = ["id", "email", "name", "is_staff", "date_joined", "budgets"]
        read_only_fields = ["id", "email", "is_staff", "date_joined", "budgets"]

    @extend_schema_field(BudgetStatusSerializer(many=True))
    def get_budgets(self, user: User) -> list[dict]:
        return BudgetStatusSerializer(budgets_of(user=user)[None], many=True).data


class UserUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150, allow_blank=True, required=False)


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(write_only=True, max_length=128)
    new_password = serializers.CharField(write_only=True, max_length=128)

    def validate_current_password(self, value: str) -> str:
        if not self.context["request"].user.check_password(value):
            raise serializers.ValidationError("The current password is not correct.")
        return value


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)


class RefreshTokenSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=2048)


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """simplejwt's, answering 401 (not 500) when the token's user no longer exists or its
    user claim is not an id."""

    token_class = RefreshToken

    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except get_user_model().DoesNotExist:
            raise exceptions.AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            ) from None


class ApiKeyListSerializer(serializers.ListSerializer):
    """Loads every listed key's budgets at once (two queries), not once per key."""

    def to_representation(self, data):
        keys = list(data.all() if hasattr(data, "all") else data)
        if keys:
            request = self.context.get("request")
            owner = getattr(request, "user", None)
            if owner is None or owner.pk != keys[0].owner_id:
                owner = keys[0].owner
            self.child.key_budgets = budgets_of(user=owner, api_key_ids=[key.pk for key in keys])
        return super().to_representation(keys)


class ApiKeySerializer(serializers.ModelSerializer):
    budgets = serializers.SerializerMethodField(
        help_text="This key's own budgets; its spend also counts toward yours (auth/me/)."
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "budgets",
        ]
        read_only_fields = fields
        list_serializer_class = ApiKeyListSerializer

    @extend_schema_field(BudgetStatusSerializer(many=True))
    def get_budgets(self, api_key: ApiKey) -> list[dict]:
        loaded = getattr(self, "key_budgets", None)
        if loaded is None or api_key.pk not in loaded:
            loaded = budgets_of(user=api_key.owner, api_key_ids=[api_key.pk])
        return BudgetStatusSerializer(loaded[api_key.pk], many=True).data


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The secret. Shown only in this response."
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class TokenVerifySerializer(jwt_serializers.TokenVerifySerializer):
    """simplejwt's, answering a blacklisted token, or one whose user claim is not an id, with
    401 like any other unusable token."""

    def validate(self, attrs):
        try:
            UntypedToken(attrs["token"])
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None
        try:
            return super().validate(attrs)
        except serializers.ValidationError as exc:
            raise InvalidToken(_first_message(exc.detail)) from None


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        detail = next(iter(detail.values()), "")
    if isinstance(detail, list):
        detail = detail[0] if detail else ""
    return str(detail) or "Token is invalid."
