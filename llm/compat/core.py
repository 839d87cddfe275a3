"""The translation core every emulated API shares.

Each API module (``openai_chat.py``, ``anthropic_messages.py``, ``responses.py``) parses its
request into one neutral ``GatewayRequest`` and renders a ``CompletionResult`` (or a
``GatewayError``) back in its own shape; everything between — which catalog model, whether
its provider speaks the client's format, limits, the provider call, accounting — is done
once, in ``gateway.py``.

Fields of the client's format that have no neutral meaning (tools, tool results, images,
``response_format``...) travel as ``passthrough``: forwarded untouched when the model's
provider speaks the same format, and otherwise refused with a 400 that names the parameter,
never dropped silently."""

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from llm.providers import ChatMessage, ProviderError, ProviderTimeout
from llm.providers.canonical import ImagePart, ResponseFormat, Tool, ToolChoice
from project.api.errors import status_for
from project.api.parsers import NotUnicodeText, json_loads_text
from project.errors import DomainError

OPENAI, ANTHROPIC = "openai", "anthropic"
# The wire format each catalog provider speaks.
FORMAT_OF_PROVIDER = {"openai": OPENAI, "openai_compatible": OPENAI, "anthropic": ANTHROPIC}


class GatewayError(Exception):
    """A refusal or failure, in neutral terms each API renders in its own error shape.

    ``kind`` is one of: invalid_request, authentication, permission, not_found, too_large,
    rate_limit, provider, timeout, overloaded. ``param`` names the offending request field;
    ``headers`` are sent with the error (the ``x-ratelimit-*`` standing of a 429)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.headers = headers or {}


# The neutral kind of each status Parley itself answers with (the emulated APIs name them).
KIND_OF_STATUS = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    413: "too_large",
    429: "rate_limit",
    503: "overloaded",
}


def kind_of_status(status: int) -> str:
    if status >= 500:
        return KIND_OF_STATUS.get(status, "provider")
    return KIND_OF_STATUS.get(status, "invalid_request")


def domain_refusal(error: DomainError) -> GatewayError:
    """A domain error (model access, rate limit, budget, Redis unavailable...) in neutral
    terms, keeping its ``Retry-After`` and ``x-ratelimit-*`` standing. The one mapping every
    emulated API uses."""
    if error.code in ("model_unknown", "model_unavailable"):  # as /v1/ answers unknown models
        return GatewayError(404, "not_found", error.message, param="model", code="model_not_found")
    status = status_for(error)
    param = next(iter(error.details), None) if isinstance(error.details, dict) else None
    return GatewayError(
        status,
        kind_of_status(status),
        error.message,
        param=param if status == 400 else None,
        code=error.code,
        retry_after=error.retry_after,
        headers=dict(getattr(error, "limits", None) or {}),
    )


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request", message, param=param, code=code)


@dataclass(slots=True)
class GatewayRequest:
    """One call in neutral terms, whichever API it came in through."""

    endpoint: str  # "chat.completions", "messages", "responses"
    wire_format: str  # the format the client speaks: OPENAI or ANTHROPIC
    model: str  # the catalog slug the client asked for
    messages: list[ChatMessage]
    system: str = ""
    max_tokens: int | None = None  # None: the model's default
    max_tokens_param: str = "max_tokens"  # the client's name for it, for errors
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    client_user: str = ""
    metadata: dict | None = None
    # Fields forwarded as they are, only to a provider of the client's own format;
    # ``passthrough_param`` (default: the first key) is what a refusal names.
    passthrough: dict[str, Any] = field(default_factory=dict)
    passthrough_param: str = ""
    # The canonical ChatRequest's other fields (tools, tool_choice, response_format, sampling,
    # logprobs, reasoning, cache hints, param_names...), as keyword arguments.
    options: dict[str, Any] = field(default_factory=dict)
    # Fields with no effect on the reply (``service_tier``, ``store: false``...): forwarded to a
    # provider of the client's format, dropped for the other.
    hints: dict[str, Any] = field(default_factory=dict)


def provider_error(exc: ProviderError) -> GatewayError:
    """What a provider's failure means to the client: its 429 stays a 429 (with the provider's
    Retry-After), a timeout is a 504, a refusal of the request's content a 400, and anything
    else the provider or its configuration got wrong a 502 — never a 500."""
    message = str(exc)
    if isinstance(exc, ProviderTimeout):
        return GatewayError(504, "timeout", message, code="provider_timeout")
    status = exc.status_code
    if status == 429:
        return GatewayError(
            429,
            "rate_limit",
            message,
            code="provider_rate_limited",
            retry_after=exc.retry_after if exc.retry_after is not None else 1,
        )
    if status in (400, 413, 422) or (status is None and not exc.transient):
        return GatewayError(400, "invalid_request", message, code="provider_rejected_request")
    if status == 529:
        return GatewayError(503, "overloaded", message, code="provider_overloaded", retry_after=1)
    return GatewayError(502, "provider", message, code="provider_error")


def parse_json_object(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        body = json_loads_text(raw or b"null")
    except NotUnicodeText as exc:
        raise invalid(str(exc), code="invalid_unicode") from None
    except ValueError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def number(body: dict, name: str, *, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise invalid(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)
    return float(value)


def positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise invalid(f"'{name}' must be a positive integer.", param=name)
    return value


def stop_sequences(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > 16
        or not all(isinstance(s, str) and 0 < len(s) <= 256 for s in value)
    ):
        raise invalid(f"'{name}' must be a string or a list of up to 16 strings.", param=name)
    return tuple(value)


# Finish reasons are kept in OpenAI's vocabulary (CompletionResult); Anthropic's names:
ANTHROPIC_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


DATA_URL = re.compile(r"data:(?P<type>image/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def image_from_url(url: Any, param: str, detail: str = "") -> ImagePart:
    """An image from an http(s) URL or a ``data:`` URL of base64 (what OpenAI clients send)."""
    if not isinstance(url, str) or not url:
        raise invalid("An image needs a 'url' string.", param=param)
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url, detail=detail)
    match = DATA_URL.fullmatch(url)
    if match is None or match["type"] not in IMAGE_TYPES:
        raise invalid(
            "An image URL must be http(s) or a data: URL of base64 JPEG, PNG, GIF or WebP.",
            param=param,
        )
    try:
        base64.b64decode(match["data"][:4096], validate=False)
    except (binascii.Error, ValueError):
        raise invalid("The image's data: URL is not valid base64.", param=param) from None
    return ImagePart(media_type=match["type"], data=match["data"], detail=detail)


def json_schema_object(value: Any, param: str) -> dict:
    if not isinstance(value, dict):
        raise invalid("A JSON schema must be an object.", param=param)
    return value


def tool_of_function(function: Any, param: str) -> Tool:
    """A function tool from OpenAI's shape (``{"name", "description", "parameters",
    "strict"}``: inside ``function`` for Chat Completions, flat for Responses)."""
    if not isinstance(function, dict):
        raise invalid("A function tool must be an object.", param=param)
    name = function.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        raise invalid(
            "A tool's name must be 1-64 letters, digits, underscores or dashes.",
            param=f"{param}.name",
        )
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise invalid("A tool's description must be a string.", param=f"{param}.description")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    strict = function.get("strict")
    return Tool(
        name=name,
        description=description,
        parameters=json_schema_object(parameters, f"{param}.parameters"),
        strict=strict if isinstance(strict, bool) else None,
    )


def openai_tool_choice(value: Any, param: str = "tool_choice") -> ToolChoice | None:
    """``auto``/``none``/``required`` or a named function, in either OpenAI shape."""
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(mode=value)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = value.get("name") or (function.get("name") if isinstance(function, dict) else None)
        if isinstance(name, str) and name:
            return ToolChoice(mode="tool", name=name)
    raise invalid(
        "'tool_choice' must be auto, none, required or a function tool by name.", param=param
    )


def openai_response_format(value: Any, param: str) -> ResponseFormat | None:
    """Structured output from OpenAI's shape: ``{"type": "text" | "json_object"}`` or a
    ``json_schema`` (nested under ``json_schema`` in Chat Completions, flat in Responses)."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        spec = value.get("json_schema", value)
        if not isinstance(spec, dict):
            raise invalid("'json_schema' must be an object.", param=param)
        name = spec.get("name") or "response"
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            raise invalid(
                "The schema's name must be 1-64 letters, digits, underscores or dashes.",
                param=f"{param}.name",
            )
        strict = spec.get("strict")
        return ResponseFormat(
            type="json_schema",
            name=name,
            schema=json_schema_object(spec.get("schema") or {"type": "object"}, param),
            strict=strict if isinstance(strict, bool) else None,
            description=spec.get("description") if isinstance(spec.get("description"), str) else "",
        )
    raise invalid("The format's type must be text, json_object or json_schema.", param=param)


def integer(body: dict, name: str, *, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return value
