from datetime import date

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.api.serializers import JobSerializer
from llm.models import Conversation, LLMModel, Message
from project.api.fields import UsdFromMicrosField


class LLMModelSerializer(serializers.ModelSerializer):
    input_price_per_mtok = serializers.DecimalField(
        max_digits=10, decimal_places=4, coerce_to_string=True
    )
    output_price_per_mtok = serializers.DecimalField(
        max_digits=10, decimal_places=4, coerce_to_string=True
    )

    class Meta:
        model = LLMModel
        fields = [
            "slug",
            "provider",
            "kind",
            "display_name",
            "context_window",
            "max_output_tokens",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "cache_read_price_per_mtok",
            "cache_write_price_per_mtok",
            "is_standin",
        ]
        read_only_fields = fields


class ParamsSerializer(serializers.Serializer):
    temperature = serializers.FloatField(min_value=0, max_value=2, allow_null=True, required=False)
    max_tokens = serializers.IntegerField(min_value=1, allow_null=True, required=False)


class SearchMatchSerializer(serializers.Serializer):
    message_id = serializers.UUIDField()
    snippet = serializers.CharField(
        help_text="A short passage of the message, matched words between ** (Markdown bold; "
        "the text is not HTML-escaped)."
    )


class ConversationSerializer(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    params = serializers.SerializerMethodField()
    match = serializers.SerializerMethodField(
        help_text="With ?q=: the best matching message (null when only the title matched, "
        "and outside a search)."
    )

    class Meta:
        model = Conversation
        fields = [
            "id",
            "title",
            "model",
            "system_prompt",
            "params",
            "archived",
            "current_leaf",
            "created_at",
            "updated_at",
            "match",
        ]
        read_only_fields = fields

    @extend_schema_field(SearchMatchSerializer(allow_null=True))
    def get_match(self, conversation: Conversation) -> dict | None:
        match = getattr(conversation, "search_match", None)
        return SearchMatchSerializer(match).data if match else None

    @extend_schema_field(ParamsSerializer)
    def get_params(self, conversation: Conversation) -> dict:
        return {
            "temperature": float(conversation.temperature)
            if conversation.temperature is not None
            else None,
            "max_tokens": conversation.max_tokens,
        }


class ConversationWriteSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, allow_blank=True, required=False)
    model = serializers.CharField(max_length=64, help_text="A slug from GET /api/v1/models/.")
    system_prompt = serializers.CharField(allow_blank=True, required=False, trim_whitespace=False)
    params = ParamsSerializer(required=False)
    archived = serializers.BooleanField(required=False)
    current_leaf = serializers.UUIDField(
        required=False,
        help_text="Switch branch: any message of this conversation; the branch continues down "
        "its newest replies. Then GET messages/ lists it and new messages follow it.",
    )

    def validate_system_prompt(self, value: str) -> str:
        limit = settings.LLM_MAX_SYSTEM_PROMPT_CHARS
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} characters.")
        return value


class MessageSerializer(serializers.ModelSerializer):
    cost = UsdFromMicrosField(source="cost_micros", allow_null=True, read_only=True)
    model = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True)
    parent = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)
    parts = serializers.JSONField(
        read_only=True,
        help_text="The whole content when it is more than text (images, tool calls, tool "
        "results: each an object with its 'type'), as a stored response's turns have it; "
        "empty for a message of text alone.",
    )
    sibling_ids = serializers.SerializerMethodField(
        help_text="Messages with the same parent, this one included, oldest first: the "
        "alternatives a client can switch to (PATCH the conversation's current_leaf). Null "
        "in stream events."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "parent",
            "sibling_ids",
            "role",
            "content",
            "parts",
            "status",
            "finish_reason",
            "input_tokens",
            "output_tokens",
            "cost",
            "latency_ms",
            "time_to_first_token_ms",
            "model",
            "job",
            "error",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField(), allow_null=True))
    def get_sibling_ids(self, message: Message) -> list | None:
        # Set by the selectors that read the tree (one query for all); never queried here,
        # since the async stream view serializes messages too.
        sibling_ids = getattr(message, "sibling_ids", None)
        return [str(pk) for pk in sibling_ids] if sibling_ids is not None else None


class MessageListQuerySerializer(serializers.Serializer):
    branch = serializers.UUIDField(
        required=False,
        help_text="List this branch instead of the current one: the path from the root to "
        "this message, continued down its newest replies.",
    )
    all = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Every message of every branch, in the order written (use `parent`).",
    )


class RegenerateSerializer(serializers.Serializer):
    model = serializers.CharField(
        max_length=64, required=False, help_text="Another model for this reply only (a slug)."
    )
    params = ParamsSerializer(required=False, help_text="For this reply only.")


class MessageCreateSerializer(serializers.Serializer):
    content = serializers.CharField(trim_whitespace=False)

    def validate_content(self, value: str) -> str:
        # The length limit is a domain rule: llm.services.message_post enforces it.
        if not value.strip():
            raise serializers.ValidationError("The message is empty.")
        return value


class PostedMessageSerializer(serializers.Serializer):
    user_message = MessageSerializer()
    assistant_message = MessageSerializer()
    job = JobSerializer()


class UsageRowSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField(help_text="Every prompt token, cached included.")
    output_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField(
        help_text="Of the input tokens, those read from the provider's prompt cache."
    )
    cache_write_tokens = serializers.IntegerField(
        help_text="Of the input tokens, those written to the provider's prompt cache."
    )
    cost = UsdFromMicrosField(source="cost_micros")
    requests = serializers.IntegerField()


class UsageByDaySerializer(UsageRowSerializer):
    date = serializers.DateField()


class UsageByModelSerializer(UsageRowSerializer):
    model = serializers.CharField()


class UsageByApiKeySerializer(UsageRowSerializer):
    api_key = serializers.IntegerField(
        allow_null=True, help_text="The API key's id; null for requests made with a JWT."
    )
    api_key_name = serializers.CharField(allow_null=True)
    api_key_prefix = serializers.CharField(allow_null=True)


class UsageByTeamSerializer(UsageRowSerializer):
    team = serializers.IntegerField(
        allow_null=True, help_text="The team's id; null for calls charged to no team."
    )
    team_slug = serializers.CharField(allow_null=True)
    team_name = serializers.CharField(allow_null=True)


class UsageByUserSerializer(UsageRowSerializer):
    user = serializers.IntegerField()
    email = serializers.EmailField()


class UsageReportSerializer(serializers.Serializer):
    user = serializers.IntegerField(allow_null=True, help_text="Null for a team's report.")
    team = serializers.IntegerField(allow_null=True, help_text="Set for a team's report.")
    since = serializers.DateField()
    until = serializers.DateField()
    total = UsageRowSerializer()
    by_day = UsageByDaySerializer(many=True)
    by_model = UsageByModelSerializer(many=True)
    by_api_key = UsageByApiKeySerializer(many=True)
    by_team = UsageByTeamSerializer(many=True)
    by_user = UsageByUserSerializer(many=True)


class UsageQuerySerializer(serializers.Serializer):
    since = serializers.DateField(
        required=False, help_text="First day (UTC), default: this month's first."
    )
    until = serializers.DateField(
        required=False, help_text="Last day included (UTC), default: today."
    )
    user = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="Staff only: another user's id."
    )
    team = serializers.CharField(
        required=False,
        max_length=64,
        help_text="A team's id or slug: that team's usage (every member's calls charged to it). "
        "Team admins of that team and staff only.",
    )

    def validate(self, attrs: dict) -> dict:
        # The report reads up to the day after `until`, which the calendar's last day lacks.
        for name in ("since", "until"):
            if attrs.get(name) == date.max:
                raise serializers.ValidationError({name: ["At most 9999-12-30."]})
        return attrs


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["json", "markdown"], default="json")
    all = serializers.BooleanField(
        default=False, help_text="Every branch (JSON only), not just the current one."
    )


class ExportedMessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    parent = serializers.UUIDField(allow_null=True)
    role = serializers.CharField()
    content = serializers.CharField()
    status = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cost = UsdFromMicrosField(source="cost_micros", allow_null=True)
    created_at = serializers.DateTimeField()


class ConversationExportSerializer(serializers.Serializer):
    """The JSON export file (documentation only: the file is written by llm.exports)."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    model = serializers.CharField()
    system_prompt = serializers.CharField()
    params = ParamsSerializer()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    exported_at = serializers.DateTimeField()
    current_leaf = serializers.UUIDField(allow_null=True)
    branch = serializers.ChoiceField(choices=["current", "all"])
    messages = ExportedMessageSerializer(many=True)
