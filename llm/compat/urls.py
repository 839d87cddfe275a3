"""The compatible API, mounted at ``/v1/`` (outside ``/api/v1/``): paths exactly as the
emulated APIs have them, so the SDKs work with only a base URL changed. A trailing slash is
accepted on every path (``/v1/models/`` is ``/v1/models``); any other path under ``/v1/`` is a
404 and a method an endpoint does not take a 405 with ``Allow``, both in the API's shape
(``edge.py``)."""

from django.urls import re_path

from llm.compat import (
    anthropic_messages,
    count_tokens,
    embeddings,
    models_api,
    openai_chat,
    responses,
)
from llm.compat.edge import endpoint, unknown_path

ID = r"(?P<{}>[^/]+)"

urlpatterns = [
    re_path(r"^models/?$", endpoint(models_api.model_list, "GET"), name="compat-models"),
    re_path(
        rf"^models/{ID.format('model_id')}/?$",
        endpoint(models_api.model_detail, "GET"),
        name="compat-model",
    ),
    re_path(
        r"^chat/completions/?$",
        endpoint(openai_chat.chat_completions, "POST"),
        name="compat-chat-completions",
    ),
    re_path(r"^messages/?$", endpoint(anthropic_messages.messages, "POST"), name="compat-messages"),
    re_path(
        r"^messages/count_tokens/?$",
        endpoint(count_tokens.count_tokens, "POST"),
        name="compat-count-tokens",
    ),
    re_path(r"^embeddings/?$", endpoint(embeddings.embeddings, "POST"), name="compat-embeddings"),
    re_path(r"^responses/?$", endpoint(responses.responses, "POST"), name="compat-responses"),
    re_path(
        rf"^responses/{ID.format('response_id')}/?$",
        endpoint(responses.response_detail, "GET", "DELETE"),
        name="compat-response",
    ),
    re_path(
        rf"^responses/{ID.format('response_id')}/cancel/?$",
        endpoint(responses.response_cancel, "POST"),
        name="compat-response-cancel",
    ),
    re_path(
        rf"^responses/{ID.format('response_id')}/input_items/?$",
        endpoint(responses.response_input_items, "GET"),
        name="compat-response-input-items",
    ),
    re_path(r"^(?P<path>.*)$", unknown_path, name="compat-unknown"),
]
