from django.contrib.auth import get_user_model
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts.api.tokens import RefreshToken, UntypedToken
from accounts.models import ApiKey, User
from accounts.quotas import user_budget


class RegisterSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        write_only=True, max_length=128, style={"input_type": "password"}
    )
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


class BudgetSerializer(serializers.Serializer):
    monthly_tokens = serializers.IntegerField(allow_null=True, source="monthly_token_budget")
    used_this_month = serializers.IntegerField()
    remaining_this_month = serializers.IntegerField(allow_null=True)


class UserSerializer(serializers.ModelSerializer):
    budget = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "email", "name", "is_staff", "date_joined", "budget"]
        read_only_fields = ["id", "email", "is_staff", "date_joined", "budget"]

    def get_budget(self, user: User) -> BudgetSerializer:
        budget = user_budget(user=user)
        return BudgetSerializer(
            {
                "monthly_token_budget": budget.monthly_tokens,
                "used_this_month": budget.used_this_month,
                "remaining_this_month": budget.remaining,
            }
        ).data


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


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
        read_only_fields = fields


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
