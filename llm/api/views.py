from datetime import date

from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import request_api_key
from budgets.periods import month_start
from llm import selectors, services
from llm.access import model_access_check, models_allowed
from llm.api import serializers
from llm.exports import ExportFile, conversation_export
from llm.models import Conversation, Message
from project.errors import InvalidInput
from teams.api.context import TEAM_HEADER_PARAMETER, request_team
from teams.selectors import team_for_usage

MAX_USAGE_RANGE_DAYS = 366
IDEMPOTENCY_KEY_MAX = 255


@extend_schema_view(
    list=extend_schema(
        tags=["models"],
        summary="Models you can use now",
        description="Enabled models whose provider is configured (a key, or the local stand-in). "
        "Prices are USD per million tokens, as decimal strings.",
    ),
    retrieve=extend_schema(tags=["models"], summary="One usable model by slug"),
)
class LLMModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.LLMModelSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_.]+"

    def get_queryset(self):
        return selectors.model_catalog()

    def list(self, request, *args, **kwargs):
        usable = models_allowed(
            selectors.model_list_available(),
            user=request.user,
            api_key=request_api_key(request),
            team=request_team(request),
        )
        page = self.paginate_queryset(usable)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def get_object(self):
        model = selectors.model_find_available(slug=self.kwargs["slug"])
        if model is None:
            raise Http404
        model_access_check(
            model=model,
            user=self.request.user,
            api_key=request_api_key(self.request),
            team=request_team(self.request),
        )
        return model


CONVERSATION_TAG = ["conversations"]
ARCHIVED_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class FormatIsTheFileType(BaseContentNegotiation):
    """For export/: ``?format=`` names the file type, not DRF's renderer override (which
    would answer 404 to ``format=markdown``); errors are still rendered as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


def export_response(exported: ExportFile) -> HttpResponse:
    response = HttpResponse(exported.body, content_type=exported.content_type)
    response["Content-Disposition"] = content_disposition_header(True, exported.filename)
    return response


@extend_schema_view(
    list=extend_schema(
        tags=CONVERSATION_TAG,
        summary="Your conversations",
        parameters=[
            OpenApiParameter(
                "q",
                str,
                description="Search titles and message text (up to 200 characters): "
                'full-text on PostgreSQL (stemmed words, "quoted phrases", -excluded), best '
                "match first, each result's `match` naming the best matching message with a "
                "snippet; a case-insensitive substring match on SQLite, newest first.",
            ),
            OpenApiParameter("search", str, description="Case-insensitive match on the title."),
            OpenApiParameter(
                "archived", bool, description="Only archived (true) or active (false)."
            ),
        ],
    ),
    retrieve=extend_schema(tags=CONVERSATION_TAG, summary="One of your conversations"),
    create=extend_schema(
        tags=CONVERSATION_TAG,
        summary="Start a conversation",
        request=serializers.ConversationWriteSerializer,
        responses={201: serializers.ConversationSerializer},
    ),
    partial_update=extend_schema(
        tags=CONVERSATION_TAG,
        summary="Change title, model, system prompt, params or archived",
        request=serializers.ConversationWriteSerializer(partial=True),
        responses={200: serializers.ConversationSerializer},
    ),
    destroy=extend_schema(
        tags=CONVERSATION_TAG,
        summary="Delete a conversation and its messages (replies in flight are cancelled)",
    ),
)
class ConversationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = serializers.ConversationSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Conversation.objects.none()
        archived = self.request.query_params.get("archived", "").lower()
        if archived and archived not in ARCHIVED_VALUES:  # empty is the same as left out
            raise InvalidInput("`archived` must be true or false.", code="invalid_archived")
        if self.action == "list" and (q := self._search_text()):
            return selectors.conversation_search(
                owner=self.request.user, q=q, archived=ARCHIVED_VALUES.get(archived)
            )
        return selectors.conversation_list(
            owner=self.request.user,
            search=self.request.query_params.get("search", "")[:200] or None,
            archived=ARCHIVED_VALUES.get(archived),
        )

    def _search_text(self) -> str:
        return self.request.query_params.get("q", "").strip()[:200]

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        if q := self._search_text():
            selectors.conversation_search_matches(conversations=page, q=q)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        data = serializers.ConversationWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields.pop("archived", None)
        if "current_leaf" in fields:  # was a TypeError, a 500 (found by schemathesis)
            raise ValidationError({"current_leaf": ["A new conversation has no messages yet."]})
        conversation = services.conversation_create(
            owner=request.user,
            model_slug=fields.pop("model"),
            api_key=request_api_key(request),
            team=request_team(request),
            **fields,
        )
        return Response(self.get_serializer(conversation).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        conversation = self.get_object()
        data = serializers.ConversationWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if "model" in fields:
            fields["model_slug"] = fields.pop("model")
        conversation = services.conversation_update(
            conversation=conversation,
            api_key=request_api_key(request),
            team=request_team(request),
            **fields,
        )
        return Response(self.get_serializer(conversation).data)

    def perform_destroy(self, instance: Conversation) -> None:
        services.conversation_delete(conversation=instance)

    @extend_schema(
        tags=CONVERSATION_TAG,
        summary="Download the conversation as a file",
        description="`format=json` (default) or `markdown`: the current branch, root first. "
        "`all=true` (JSON only) exports every message of every branch with its `parent`. "
        "Answers with `Content-Disposition: attachment` and a file name from the title.",
        parameters=[serializers.ExportQuerySerializer],
        responses={
            (200, "application/json"): serializers.ConversationExportSerializer,
            (200, "text/markdown"): OpenApiTypes.STR,
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FormatIsTheFileType)
    def export(self, request: Request, pk: str) -> HttpResponse:
        conversation = self.get_object()
        query = serializers.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        exported = conversation_export(
            conversation=conversation,
            export_format=query.validated_data["format"],
            whole_tree=query.validated_data["all"],
        )
        return export_response(exported)


MESSAGE_TAG = ["messages"]
IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description=f"Up to {IDEMPOTENCY_KEY_MAX} characters, unique per request.",
)


@extend_schema_view(
    list=extend_schema(tags=MESSAGE_TAG, summary="Messages of a conversation, oldest first"),
    retrieve=extend_schema(tags=MESSAGE_TAG, summary="One message (poll a reply's status here)"),
)
class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.MessageSerializer

    def conversation(self) -> Conversation:
        return selectors.conversation_get(
            owner=self.request.user, conversation_id=self.kwargs["conversation_pk"]
        )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return selectors.message_list(conversation=self.conversation())

    @extend_schema(
        tags=MESSAGE_TAG,
        summary="Messages of the current branch, root first",
        description="By default the conversation's current branch: from the first message to "
        "its `current_leaf`. `?branch=<message id>` lists another branch, `?all=true` every "
        "message of every branch in the order written (each has its `parent`). Each message "
        "lists its `sibling_ids` (itself included): the alternatives made by regenerating or "
        "editing.",
        parameters=[serializers.MessageListQuerySerializer],
    )
    def list(self, request: Request, conversation_pk: str) -> Response:
        query = serializers.MessageListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        conversation = self.conversation()
        if query.validated_data["all"]:
            messages = selectors.message_list_all(conversation=conversation)
        else:
            messages = selectors.message_branch(
                conversation=conversation, leaf_id=query.validated_data.get("branch")
            )
        page = self.paginate_queryset(messages)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def get_object(self) -> Message:
        message = super().get_object()
        selectors.messages_with_siblings(conversation=message.conversation, messages=[message])
        return message

    def _idempotency_key(self, request: Request) -> str:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise InvalidInput(
                f"Idempotency-Key may be at most {IDEMPOTENCY_KEY_MAX} characters.",
                code="invalid_idempotency_key",
            )
        return key

    def _accepted(self, posted: services.PostedMessage) -> Response:
        selectors.messages_with_siblings(
            conversation=posted.assistant_message.conversation,
            messages=[posted.user_message, posted.assistant_message],
        )
        body = serializers.PostedMessageSerializer(posted).data
        headers = {} if posted.created else {"Idempotent-Replayed": "true"}
        headers.update(posted.rate_limit_headers)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)

    def _message(self, conversation_pk: str, pk: str) -> Message:
        return selectors.message_get(
            owner=self.request.user, conversation_id=conversation_pk, message_id=pk
        )

    @extend_schema(
        tags=MESSAGE_TAG,
        summary="Write another reply to the same user message",
        description="Queues a new assistant reply beside this one (which is kept; both are "
        "`sibling_ids` of each other) and makes it the current leaf. `model` and `params` "
        "apply to the new reply only. Answers 202 like posting a message, with the same rules "
        "(409 while a reply is being written, `Idempotency-Key`).",
        request=serializers.RegenerateSerializer,
        responses={202: serializers.PostedMessageSerializer},
        parameters=[IDEMPOTENCY_KEY_HEADER, TEAM_HEADER_PARAMETER],
        extensions={"x-error-statuses": ["403", "409", "422", "429"]},
    )
    def regenerate(self, request: Request, conversation_pk: str, pk: str) -> Response:
        reply = self._message(conversation_pk, pk)
        data = serializers.RegenerateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        posted = services.message_regenerate(
            reply=reply,
            model_slug=data.validated_data.get("model"),
            params=data.validated_data.get("params"),
            idempotency_key=self._idempotency_key(request),
            api_key=request_api_key(request),
            team=request_team(request),
        )
        return self._accepted(posted)

    @extend_schema(
        tags=MESSAGE_TAG,
        summary="Ask again with different words",
        description="Stores `content` as a new user message beside this one (the original and "
        "its replies are kept) and queues its reply, which becomes the current leaf. Answers "
        "202 like posting a message, with the same rules.",
        request=serializers.MessageCreateSerializer,
        responses={202: serializers.PostedMessageSerializer},
        parameters=[IDEMPOTENCY_KEY_HEADER, TEAM_HEADER_PARAMETER],
        extensions={"x-error-statuses": ["403", "409", "422", "429"]},
    )
    def edit(self, request: Request, conversation_pk: str, pk: str) -> Response:
        message = self._message(conversation_pk, pk)
        data = serializers.MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        posted = services.message_edit(
            message=message,
            content=data.validated_data["content"],
            idempotency_key=self._idempotency_key(request),
            api_key=request_api_key(request),
            team=request_team(request),
        )
        return self._accepted(posted)

    @extend_schema(
        tags=MESSAGE_TAG,
        summary="Send a message; the reply is written by a background job",
        description="Stores your message, a `queued` assistant message and its job, and answers "
        "202. Follow the reply at `.../messages/{assistant id}/stream/` (Server-Sent Events) or "
        "poll the message or the job. With an `Idempotency-Key` header, repeating the same "
        "request returns the original answer instead of a second completion; reusing the key "
        "with a different body is a 422.",
        request=serializers.MessageCreateSerializer,
        responses={202: serializers.PostedMessageSerializer},
        parameters=[IDEMPOTENCY_KEY_HEADER, TEAM_HEADER_PARAMETER],
        extensions={"x-error-statuses": ["403", "409", "422", "429"]},
    )
    def create(self, request: Request, conversation_pk: str) -> Response:
        conversation = self.conversation()
        data = serializers.MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        posted = services.message_post(
            conversation=conversation,
            content=data.validated_data["content"],
            idempotency_key=self._idempotency_key(request),
            api_key=request_api_key(request),
            team=request_team(request),
        )
        return self._accepted(posted)


class UsageView(APIView):
    @extend_schema(
        tags=["usage"],
        summary="Tokens and cost by day, model, API key, team and user",
        description="Completed replies between `since` and `until` (UTC dates, both included; at "
        f"most {MAX_USAGE_RANGE_DAYS} days). Cost is USD as a decimal string. Staff may pass "
        "`user` to see anyone's. `team` (id or slug) gives a team's usage, every member's calls "
        "charged to it, to its team admins and staff (another team: 404).",
        parameters=[serializers.UsageQuerySerializer],
        responses={200: serializers.UsageReportSerializer},
    )
    def get(self, request: Request) -> Response:
        query = serializers.UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        today = timezone.now().date()
        since: date = query.validated_data.get("since") or month_start().date()
        until: date = query.validated_data.get("until") or today
        if until < since:
            raise InvalidInput("`until` is before `since`.", code="invalid_range")
        if (until - since).days >= MAX_USAGE_RANGE_DAYS:
            raise InvalidInput(
                f"At most {MAX_USAGE_RANGE_DAYS} days at once.", code="range_too_long"
            )
        if "team" in query.validated_data:
            team_id = team_for_usage(user=request.user, team=query.validated_data["team"]).pk
            report = selectors.usage_report(team_id=team_id, since=since, until=until)
            return Response(serializers.UsageReportSerializer(report).data)
        user_id = query.validated_data.get("user", request.user.pk)
        if user_id != request.user.pk and not request.user.is_staff:
            raise PermissionDenied("Only staff can see another user's usage.")
        report = selectors.usage_report(user_id=user_id, since=since, until=until)
        return Response(serializers.UsageReportSerializer(report).data)
