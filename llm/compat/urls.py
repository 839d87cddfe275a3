"""The compatible API, mounted at ``/v1/`` (outside ``/api/v1/``): paths exactly as the
emulated APIs have them, so the SDKs work with only a base URL changed."""

from django.urls import path

from llm.compat import (
    anthropic_messages,
    count_tokens,
    embeddings,
    models_api,
    openai_chat,
    responses,
)

urlpatterns = [
    path("models", models_api.model_list, name="compat-models"),
    path("models/<str:model_id>", models_api.model_detail, name="compat-model"),
    path("chat/completions", openai_chat.chat_completions, name="compat-chat-completions"),
    path("messages", anthropic_messages.messages, name="compat-messages"),
    path("messages/count_tokens", count_tokens.count_tokens, name="compat-count-tokens"),
    path("embeddings", embeddings.embeddings, name="compat-embeddings"),
    path("responses", responses.responses, name="compat-responses"),
    path("responses/<str:response_id>", responses.response_detail, name="compat-response"),
    path(
        "responses/<str:response_id>/cancel",
        responses.response_cancel,
        name="compat-response-cancel",
    ),
]
