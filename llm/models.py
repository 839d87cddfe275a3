import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models
from django.db.models import Q

from project.money import usd


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible endpoint"


class ModelKind(models.TextChoices):
    CHAT = "chat", "Chat"  # conversations, /v1/chat/completions, /v1/messages, /v1/responses
    EMBEDDING = "embedding", "Embedding"  # /v1/embeddings only


class LLMModel(models.Model):
    """One entry of the model catalog that staff edit in the admin and clients pick by slug."""

    slug = models.SlugField(max_length=64, unique=True, help_text="What clients send as `model`.")
    display_name = models.CharField(max_length=100)
    provider = models.CharField(max_length=32, choices=Provider.choices)
    kind = models.CharField(max_length=16, choices=ModelKind.choices, default=ModelKind.CHAT)
    provider_model = models.CharField(
        max_length=128, help_text="The provider's own model name, e.g. gpt-4.1-mini."
    )
    base_url = models.URLField(
        blank=True,
        help_text="For OpenAI-compatible servers (Ollama, vLLM, LM Studio, llama.cpp). "
        "Empty means the provider's own API.",
    )
    api_key_env = models.CharField(
        max_length=64,
        blank=True,
        help_text="Name of the environment variable holding the key. Empty means the provider's "
        "default (OPENAI_API_KEY / ANTHROPIC_API_KEY); an OpenAI-compatible server may need none.",
    )
    is_standin = models.BooleanField(
        default=False,
        help_text="A local stand-in model served by Parley's own fake provider (STANDIN_BASE_URL).",
    )
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    input_price_per_mtok = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal(0),
        help_text="USD per million input tokens.",
    )
    output_price_per_mtok = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal(0),
        help_text="USD per million output tokens.",
    )
    cache_read_price_per_mtok = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per million input tokens read from the provider's prompt cache. "
        "Empty means the input price.",
    )
    cache_write_price_per_mtok = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per million input tokens written to the provider's prompt cache "
        "(Anthropic charges more for them). Empty means the input price.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "slug"]
        verbose_name = "model"
        constraints = [
            models.CheckConstraint(
                condition=Q(provider__in=[p.value for p in Provider]),
                name="llm_model_provider_valid",
            ),
            models.CheckConstraint(
                condition=Q(max_output_tokens__gt=0)
                & Q(context_window__gt=models.F("max_output_tokens")),
                name="llm_model_output_fits_window",
            ),
            models.CheckConstraint(
                condition=Q(input_price_per_mtok__gte=0) & Q(output_price_per_mtok__gte=0),
                name="llm_model_prices_not_negative",
            ),
            models.CheckConstraint(
                condition=(
                    Q(cache_read_price_per_mtok__isnull=True) | Q(cache_read_price_per_mtok__gte=0)
                )
                & (
                    Q(cache_write_price_per_mtok__isnull=True)
                    | Q(cache_write_price_per_mtok__gte=0)
                ),
                name="llm_model_cache_prices_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in ModelKind]), name="llm_model_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(provider="openai_compatible") | ~Q(base_url="") | Q(is_standin=True),
                name="llm_model_compatible_needs_base_url",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class ModelFallback(models.Model):
    """One entry of a catalog model's ordered fallback list: when a reply's attempts on
    ``model`` run out on transient errors, it is written by the next fallback instead."""

    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="fallbacks")
    fallback = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=1, help_text="Tried in this order.")

    class Meta:
        ordering = ["model", "position"]
        constraints = [
            models.UniqueConstraint(fields=["model", "fallback"], name="llm_fallback_unique"),
            models.UniqueConstraint(
                fields=["model", "position"], name="llm_fallback_position_unique"
            ),
            models.CheckConstraint(
                condition=~Q(model=models.F("fallback")), name="llm_fallback_not_itself"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} -> {self.fallback_id} (#{self.position})"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="conversations")
    system_prompt = models.TextField(blank=True)
    temperature = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    # The end of the branch clients see and new messages follow (the message tree).
    current_leaf = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-created_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="llm_conv_owner_updated")]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__isnull=True) | Q(temperature__gte=0, temperature__lte=2),
                name="llm_conv_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=True) | Q(max_tokens__gt=0),
                name="llm_conv_max_tokens_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A reply still being written: at most one per conversation.
ACTIVE_STATUSES = (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS)

# The statuses an assistant reply may move to from each one; ``message_transition`` (in
# llm/services.py) is the only writer of ``Message.status`` and enforces this. It mirrors the
# reply's job: in_progress -> in_progress is a new attempt starting over after a lost worker.
MESSAGE_TRANSITIONS: dict[str, frozenset[str]] = {
    MessageStatus.QUEUED: frozenset(
        {MessageStatus.IN_PROGRESS, MessageStatus.FAILED, MessageStatus.CANCELLED}
    ),
    MessageStatus.IN_PROGRESS: frozenset(
        {
            MessageStatus.IN_PROGRESS,
            MessageStatus.QUEUED,
            MessageStatus.COMPLETED,
            MessageStatus.FAILED,
            MessageStatus.CANCELLED,
        }
    ),
    MessageStatus.FAILED: frozenset({MessageStatus.QUEUED}),
    MessageStatus.CANCELLED: frozenset({MessageStatus.QUEUED}),
    MessageStatus.COMPLETED: frozenset(),
}


# Conversation search (PostgreSQL full-text): one text configuration for the index and queries.
SEARCH_CONFIG = "english"
MESSAGE_SEARCH_VECTOR = SearchVector("content", config=SEARCH_CONFIG)


class Message(models.Model):
    """A turn of a conversation. Assistant replies carry their status, usage, cost and timing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    position = models.PositiveIntegerField(help_text="Order within the conversation, from 1.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text="The message this one answers or follows; none for a first message.",
    )
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    parts = models.JSONField(
        default=list,
        blank=True,
        help_text="The whole content when it is more than text (images, tool calls, tool "
        "results), as canonical parts (llm.providers.canonical_json); empty for plain text.",
    )
    call_options = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a reply was asked with beyond the conversation's parameters (tools, "
        "tool choice, structured output, instructions), for the worker that writes it.",
    )
    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETED
    )
    model = models.ForeignKey(
        LLMModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    finish_reason = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_micros = models.BigIntegerField(null=True, blank=True, help_text="USD 1e-6.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    provider_response_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["conversation", "position"]
        indexes = [
            # Full-text search of message text (PostgreSQL only: the migration skips it
            # elsewhere). Queries must use this very expression to use the index. A new
            # column must not make SQLite rebuild the table (the rebuild recreates this
            # index, which SQLite cannot parse): see migration 0010's AddJSONColumn.
            GinIndex(MESSAGE_SEARCH_VECTOR, name="llm_message_content_search"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position"], name="llm_message_position_unique"
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in MessageRole]), name="llm_message_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in MessageStatus]),
                name="llm_message_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(role="assistant") | Q(status="completed"),
                name="llm_message_user_always_completed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.position}"


class Usage(models.Model):
    """Tokens and cost of one completed reply. Kept when conversations are purged (the message
    link goes null), and unique per message so a retried reply is never counted twice."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="+")
    message = models.OneToOneField(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The API key the request was made with; empty for a JWT (or a deleted key).",
    )
    team = models.ForeignKey(
        "teams.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The team the call was charged to; empty when none.",
    )
    input_tokens = models.PositiveIntegerField(help_text="Every prompt token, cached included.")
    output_tokens = models.PositiveIntegerField()
    cache_read_tokens = models.PositiveIntegerField(
        default=0, help_text="Of the input tokens, those read from the provider's prompt cache."
    )
    cache_write_tokens = models.PositiveIntegerField(
        default=0, help_text="Of the input tokens, those written to the provider's prompt cache."
    )
    cost_micros = models.BigIntegerField(help_text="USD 1e-6 (exact sums on every database).")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "usage"
        indexes = [
            models.Index(fields=["user", "created_at"], name="llm_usage_user_created"),
            models.Index(fields=["team", "created_at"], name="llm_usage_team_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_micros__gte=0), name="llm_usage_cost_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(
                    input_tokens__gte=models.F("cache_read_tokens") + models.F("cache_write_tokens")
                ),
                name="llm_usage_cached_within_input",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.input_tokens}+{self.output_tokens} tokens, ${usd(self.cost_micros)}"


class GatewayEndpoint(models.TextChoices):
    CHAT_COMPLETIONS = "chat.completions", "/v1/chat/completions"
    MESSAGES = "messages", "/v1/messages"
    RESPONSES = "responses", "/v1/responses"
    EMBEDDINGS = "embeddings", "/v1/embeddings"


class GatewayCallStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"  # the provider failed or timed out
    REFUSED = "refused", "Refused"  # refused before any provider call (400, 403, 404, 429)
    CANCELLED = "cancelled", "Cancelled"  # the client went away mid-stream


class GatewayCall(models.Model):
    """One call to the OpenAI/Anthropic-compatible API (``/v1/``) by an authenticated caller:
    who, with which key and model, through which endpoint, what it cost and how it ended.
    Prompt and reply text are kept only when LLM_GATEWAY_STORE_TEXT is on."""

    # Each API's response id is built from it ("chatcmpl-<hex>", "msg_<hex>").
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gateway_calls"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey(
        "teams.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.ForeignKey(
        LLMModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    model_requested = models.CharField(max_length=128, blank=True)
    endpoint = models.CharField(max_length=32, choices=GatewayEndpoint.choices)
    stream = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=GatewayCallStatus.choices)
    http_status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0, help_text="USD 1e-6.")
    latency_ms = models.PositiveIntegerField(default=0)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    provider_response_id = models.CharField(max_length=128, blank=True)
    client_user = models.CharField(
        max_length=256, blank=True, help_text="The `user` / `metadata.user_id` the client sent."
    )
    metadata = models.JSONField(null=True, blank=True)
    prompt = models.JSONField(null=True, blank=True, help_text="Only with LLM_GATEWAY_STORE_TEXT.")
    reply = models.TextField(blank=True, help_text="Only with LLM_GATEWAY_STORE_TEXT.")
    usage = models.OneToOneField(
        Usage, on_delete=models.SET_NULL, null=True, blank=True, related_name="gateway_call"
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API call"
        indexes = [models.Index(fields=["user", "-created_at"], name="llm_gwcall_user_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(endpoint__in=[e.value for e in GatewayEndpoint]),
                name="llm_gwcall_endpoint_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in GatewayCallStatus]),
                name="llm_gwcall_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(cost_micros__gte=0), name="llm_gwcall_cost_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(http_status__gte=100, http_status__lte=599),
                name="llm_gwcall_http_status_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.model_requested} {self.status}"


class ModelAccess(models.Model):
    """Restricts a user, one API key or a team to a set of catalog models. Without a row every
    usable model is allowed; with one, only its ``allowed_models`` (none at all if empty). A
    request must pass its user's, its key's and the team it is charged to's restriction."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="model_access",
    )
    api_key = models.OneToOneField(
        "accounts.ApiKey",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="model_access",
    )
    team = models.OneToOneField(
        "teams.Team",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="model_access",
    )
    allowed_models = models.ManyToManyField(LLMModel, blank=True, related_name="+")

    class Meta:
        verbose_name = "model access restriction"
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(api_key__isnull=True) & Q(team__isnull=True))
                | (Q(user__isnull=True) & Q(api_key__isnull=False) & Q(team__isnull=True))
                | (Q(user__isnull=True) & Q(api_key__isnull=True) & Q(team__isnull=False)),
                name="llm_model_access_one_subject",
            ),
        ]

    def __str__(self) -> str:
        if self.team_id:
            return f"team {self.team_id}"
        return f"key {self.api_key_id}" if self.api_key_id else f"user {self.user_id}"
