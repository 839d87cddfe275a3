from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, permissions, status, viewsets
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts import selectors, services
from accounts.api import serializers
from accounts.api.permissions import JWT_ONLY, SignedInPerson
from accounts.api.throttling import LoginAttempt, RegisterRateThrottle, TokenHolderRateThrottle
from accounts.api.tokens import RefreshToken
from accounts.models import ApiKey
from project.errors import NotAllowed

AUTH_TAG = ["auth"]
# Unauthenticated operations that answer 401 for a wrong password or a bad token in the body.
BAD_CREDENTIALS = {"x-error-statuses": ["401"]}


@extend_schema(tags=AUTH_TAG, extensions={"x-error-statuses": ["401", "403"]})
class TokenObtainPairView(jwt_views.TokenObtainPairView):
    """Exchange email and password for an access and a refresh token. Failed logins are
    limited per account and per client IP: past either, 429 with Retry-After. 403
    ``password_signin_disabled`` when PASSWORD_SIGNIN_ENABLED is false."""

    throttle_classes: list = []  # LoginAttempt counts failures instead

    def get_serializer(self, *args, **kwargs):
        self._serializer = super().get_serializer(*args, **kwargs)
        return self._serializer

    def post(self, request: Request, *args, **kwargs) -> Response:
        if not settings.PASSWORD_SIGNIN_ENABLED:
            raise NotAllowed(
                "Password sign-in is turned off: sign in on the self-service page with single "
                "sign-on, and use an API key from there.",
                code="password_signin_disabled",
            )
        attempt = LoginAttempt(request)
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            raise  # a wrong password (or an inactive account): the attempt stays counted
        except Exception:
            attempt.refund()  # invalid input checked no password
            raise
        attempt.refund()  # successful logins do not count
        # Failures are recorded by audit.receivers (Django's user_login_failed signal).
        services.user_signed_in(user=self._serializer.user, method="jwt")
        return response


@extend_schema(tags=AUTH_TAG, extensions=BAD_CREDENTIALS)
class TokenRefreshView(jwt_views.TokenRefreshView):
    """Exchange a refresh token for a new access token and a new refresh token (the old one is
    blacklisted)."""

    throttle_classes = [TokenHolderRateThrottle]
    jwt_field = "refresh"


@extend_schema(tags=AUTH_TAG, extensions=BAD_CREDENTIALS)
class TokenVerifyView(jwt_views.TokenVerifyView):
    """Check that a token is valid, unexpired and not blacklisted."""

    throttle_classes = [TokenHolderRateThrottle]
    jwt_field = "token"


class RegisterView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [RegisterRateThrottle]

    @extend_schema(
        tags=AUTH_TAG,
        request=serializers.RegisterSerializer,
        responses={201: serializers.UserSerializer},
        summary="Create an account",
        description="Answers 403 when registration is closed (REGISTRATION_OPEN=false).",
        extensions={"x-error-statuses": ["403"]},
    )
    def post(self, request: Request) -> Response:
        if not settings.REGISTRATION_OPEN:
            raise NotAllowed("Registration is closed.", code="registration_closed")
        data = serializers.RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(**data.validated_data)
        return Response(serializers.UserSerializer(user).data, status=status.HTTP_201_CREATED)


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [TokenHolderRateThrottle]
    jwt_field = "refresh"

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # a bad refresh token is a 401, as on token/refresh/

    @extend_schema(
        tags=AUTH_TAG,
        request=serializers.RefreshTokenSerializer,
        responses={204: None},
        summary="Log out",
        description="Blacklists the given refresh token; it can no longer be refreshed.",
        extensions=BAD_CREDENTIALS,
    )
    def post(self, request: Request) -> Response:
        data = serializers.RefreshTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            RefreshToken(data.validated_data["refresh"]).blacklist()
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(generics.GenericAPIView):
    serializer_class = serializers.UserSerializer

    @extend_schema(tags=AUTH_TAG, summary="Your profile and remaining token budget")
    def get(self, request: Request) -> Response:
        return Response(serializers.UserSerializer(request.user).data)

    @extend_schema(
        tags=AUTH_TAG, request=serializers.UserUpdateSerializer, summary="Update your profile"
    )
    def patch(self, request: Request) -> Response:
        data = serializers.UserUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = services.user_update(user=request.user, **data.validated_data)
        return Response(serializers.UserSerializer(user).data)


class PasswordChangeView(APIView):
    permission_classes = [permissions.IsAuthenticated, SignedInPerson]

    @extend_schema(
        tags=AUTH_TAG,
        request=serializers.PasswordChangeSerializer,
        responses={200: serializers.TokenPairSerializer},
        summary="Change your password",
        description="Every refresh token issued before the change stops working; a new pair is "
        "returned. Needs a JWT: an API key gets 403 `jwt_required`.",
        auth=JWT_ONLY,
    )
    def post(self, request: Request) -> Response:
        data = serializers.PasswordChangeSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        services.user_password_change(
            user=request.user, new_password=data.validated_data["new_password"]
        )
        refresh = RefreshToken.for_user(request.user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


KEYS_NEED_JWT = "Needs a JWT: an API key gets 403 `jwt_required`."


@extend_schema_view(
    list=extend_schema(
        tags=AUTH_TAG,
        summary="Your API keys (never their secrets)",
        description=KEYS_NEED_JWT,
        auth=JWT_ONLY,
    ),
    retrieve=extend_schema(
        tags=AUTH_TAG, summary="One of your API keys", description=KEYS_NEED_JWT, auth=JWT_ONLY
    ),
    create=extend_schema(
        tags=AUTH_TAG,
        request=serializers.ApiKeyCreateSerializer,
        responses={201: serializers.ApiKeyCreatedSerializer},
        summary="Create an API key",
        description=f"The secret is in `key` in this response only; store it now. {KEYS_NEED_JWT}",
        auth=JWT_ONLY,
    ),
    destroy=extend_schema(
        tags=AUTH_TAG, summary="Revoke an API key", description=KEYS_NEED_JWT, auth=JWT_ONLY
    ),
)
class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """An API key is for programs; managing keys is for the person (see SignedInPerson)."""

    serializer_class = serializers.ApiKeySerializer
    permission_classes = [permissions.IsAuthenticated, SignedInPerson]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return ApiKey.objects.none()
        return selectors.api_key_list(owner=self.request.user)

    def create(self, request: Request) -> Response:
        data = serializers.ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.api_key_create(owner=request.user, **data.validated_data)
        body = serializers.ApiKeySerializer(issued.api_key).data | {"key": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiKey) -> None:
        services.api_key_revoke(api_key=instance)
