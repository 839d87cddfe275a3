"""Stored responses (``store: true``, the default): a response is an assistant message in a
Parley conversation, written by an ``llm.completion`` job like any conversation reply, so it
survives the client going away and worker crashes, and the admin, the usage report and the
conversations API see it.

* The input's turns are stored as the conversation's messages (images, tool calls and tool
  results as the messages' parts), the last one a user turn the reply answers; the reply keeps
  the tools, tool choice, output format and instructions it was asked with
  (``Message.call_options``), and its own tool calls as its parts.
* A ``previous_response_id`` chain is one conversation: each response's input follows the
  previous response. As in OpenAI's API, each call's own instructions, tools and model apply
  to its reply only.
* The reply's live events (text, tool calls) are relayed as Responses events; a response read
  after its live stream expired is replayed from the stored message."""

import uuid
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest

from llm import streams
from llm.compat.auth import caller_authenticate
from llm.compat.core import GatewayError, domain_refusal, invalid, parse_json_object
from llm.compat.gateway import chat_model_resolve, provider_check
from llm.compat.responses_events import EventWriter, ReplyOutput, ResponseShape, echo_fields
from llm.compat.responses_request import ResponsesRequest, responses_request_parse
from llm.lifecycle import max_tokens_ceiling
from llm.models import GatewayEndpoint, Message, MessageRole, MessageStatus, Usage
from llm.providers import ChatMessage, ChatRequest
from llm.providers.canonical import (
    ImagePart,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
)
from llm.providers.canonical_json import (
    options_dump,
    options_load,
    parts_dump,
    parts_load,
    tool_calls_of,
)
from llm.selectors import message_path
from llm.services import Turn, conversation_create, message_post
from project import errors as domain
from project.db import connection_give_back
from teams.models import Team
from teams.selectors import TEAM_HEADER, team_for_call

FINISHED = {MessageStatus.COMPLETED, MessageStatus.FAILED, MessageStatus.CANCELLED}


def response_id(message_id: uuid.UUID | str) -> str:
    return f"resp_{uuid.UUID(str(message_id)).hex}"


def _message_id(response_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(response_id.removeprefix("resp_"))
    except ValueError:
        raise _not_found(response_id) from None


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(
        404, "not_found", f"No response with id '{response_id[:80]}'.", code="response_not_found"
    )


def owned_reply(user, response_id: str) -> Message:
    """The caller's stored response, or a 404 (another user's answers the same)."""
    message = (
        Message.objects.select_related("conversation", "model")
        .filter(
            pk=_message_id(response_id),
            role=MessageRole.ASSISTANT,
            conversation__owner=user,
        )
        .first()
    )
    if message is None:
        raise _not_found(response_id)
    return message


# --- The response a stored reply is ---------------------------------------------------------


def shape_of(message: Message, *, background: bool | None = None) -> ResponseShape:
    """The response a stored reply is (one query for the previous reply in its branch)."""
    previous = None
    if message.parent_id is not None:
        previous = (
            Message.objects.filter(pk=message.parent_id, role=MessageRole.USER)
            .values_list("parent_id", flat=True)
            .first()
        )
    asked = message.call_options or {}
    return ResponseShape(
        id=response_id(message.pk),
        model=message.model.slug if message.model_id else "",
        created_at=int(message.created_at.timestamp()),
        instructions=asked.get("system", message.conversation.system_prompt) or None,
        previous_response_id=response_id(previous) if previous else None,
        background=background,
        store=True,
        metadata=asked.get("metadata"),
        **echo_fields(options_load(asked)),
    )


def snapshot_of(message: Message) -> dict:
    """What a stored reply said (and its cached input tokens, from its usage row)."""
    usage = Usage.objects.filter(message=message).values("cache_read_tokens").first()
    return {
        "status": message.status,
        "content": message.content,
        "parts": message.parts,
        "finish_reason": message.finish_reason,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cached_tokens": usage["cache_read_tokens"] if usage else 0,
        "error": message.error,
    }


def output_of(snapshot: dict) -> ReplyOutput:
    return ReplyOutput(
        text=snapshot.get("content") or "",
        tool_calls=tool_calls_of(parts_load(snapshot.get("parts"))),
        finish_reason=snapshot.get("finish_reason") or "stop",
        input_tokens=snapshot.get("input_tokens") or 0,
        output_tokens=snapshot.get("output_tokens") or 0,
        cached_tokens=snapshot.get("cached_tokens") or 0,
    )


def _error_of(snapshot: dict) -> dict | None:
    status = snapshot.get("status") or "failed"
    if status == MessageStatus.COMPLETED:
        return None
    return {"code": status, "message": snapshot.get("error") or status}


def stored_body(message: Message, shape: ResponseShape) -> dict:
    if message.status in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS):
        return shape.body(message.status)
    snapshot = snapshot_of(message)
    return shape.body(message.status, output_of(snapshot), _error_of(snapshot))


def reload_body(message_id: str, shape: ResponseShape) -> dict:
    try:
        return stored_body(Message.objects.select_related("conversation").get(pk=message_id), shape)
    finally:
        connection_give_back()


# --- Creating one ---------------------------------------------------------------------------


def stored_create(http_request: HttpRequest, raw: bytes) -> tuple[Message, ResponseShape]:
    """Authenticate, parse, and store the input's turns and the queued reply (its job is
    enqueued when the transaction commits); a refusal stores nothing."""
    try:
        user, api_key = caller_authenticate(http_request)
        parsed = responses_request_parse(parse_json_object(raw))
        try:
            team = team_for_call(
                user=user, api_key=api_key, requested=http_request.headers.get(TEAM_HEADER)
            )
            with transaction.atomic():  # a refused reply leaves no new conversation behind
                return _post(
                    user, api_key, parsed, request_id=getattr(http_request, "id", ""), team=team
                )
        except domain.DomainError as exc:
            raise domain_refusal(exc) from None
    finally:
        connection_give_back()


def _turn(message: ChatMessage) -> Turn:
    """A canonical turn as a stored message: its text, and its parts when it has them."""
    if not message.parts:
        return Turn(role=message.role, content=message.content)
    text = "".join(part.text for part in message.parts if isinstance(part, TextPart))
    return Turn(role=message.role, content=text, parts=parts_dump(message.parts))


def _call_options(parsed: ResponsesRequest) -> dict:
    """What the reply is asked with beyond the conversation's parameters."""
    request = parsed.call
    options = options_dump({**request.options, "top_p": request.top_p})
    if parsed.previous_response_id:  # this call's instructions, not the chain's first ones
        options["system"] = request.system
    if request.metadata:
        options["metadata"] = request.metadata
    return options


def _post(
    user, api_key, parsed: ResponsesRequest, *, request_id: str = "", team: Team | None = None
) -> tuple[Message, ResponseShape]:
    request = parsed.call
    model, _ = chat_model_resolve(request.model)
    *earlier, last = request.messages
    if last.role != "user":
        raise invalid(
            "The input must end with a user message or a function_call_output item: that is "
            "the turn a stored response answers.",
            param="input",
        )
    max_tokens = max_tokens_ceiling(model, request.max_tokens)  # as on every /v1/ path
    params = {"temperature": request.temperature, "max_tokens": max_tokens}
    params = {name: value for name, value in params.items() if value is not None}
    provider_check(
        model,
        ChatRequest(
            model=model.provider_model,
            messages=request.messages,
            max_tokens=max_tokens or 1,
            system=request.system,
            temperature=request.temperature,
            top_p=request.top_p,
            **request.options,
        ),
    )
    if parsed.previous_response_id:
        conversation = owned_reply(user, parsed.previous_response_id).conversation
    else:
        first_text = next((m.text for m in request.messages if m.role == "user" and m.text), "")
        conversation = conversation_create(
            owner=user,
            model_slug=model.slug,
            title=first_text[:80],
            system_prompt=request.system,
            params=params,
            api_key=api_key,
            team=team,
        )
    turn = _turn(last)
    posted = message_post(
        conversation=conversation,
        content=turn.content,
        parts=turn.parts,
        history=[_turn(message) for message in earlier],
        options=_call_options(parsed),
        model=model,
        params=params,
        api_key=api_key,
        team=team,
        # Recorded as a /v1/ call when the reply ends, like an unstored one (llm.lifecycle).
        call={
            "endpoint": GatewayEndpoint.RESPONSES,
            "request_id": str(request_id)[:128],
            "stream": bool(request.stream),
            "model_requested": request.model,
            "client_user": request.client_user,
            "metadata": request.metadata,
        },
    )
    reply = Message.objects.select_related("conversation", "model").get(
        pk=posted.assistant_message.pk
    )
    return reply, shape_of(reply, background=parsed.background)


# --- Following one --------------------------------------------------------------------------


async def follow(message_id: str, writer: EventWriter, status: str) -> AsyncIterator[str]:
    """The reply's events from its job's live stream (or, once that has expired, from the
    stored message), as Responses events."""
    yield writer.opening(status)
    live = await sync_to_async(streams.reply_stream_exists)(message_id)
    if not live:
        message = await sync_to_async(_reload)(message_id)
        if message.status in FINISHED:
            if message.content:
                yield writer.delta(message.content)
            yield await _closing(writer, message_id)
            return
    async for item in streams.reply_follow(message_id, after="0", block_ms=15000):
        if item is None:
            yield ": keep-alive\n\n"
            continue
        _, event, data = item
        if event == "delta":
            yield writer.delta(data["text"])
        elif event == "tool_call":
            yield writer.tool_start(ToolCallStart(data["index"], data["id"], data["name"]))
        elif event == "tool_arguments":
            yield writer.tool_delta(ToolCallDelta(data["index"], data["arguments"]))
        elif event == "reset":
            writer.reset()
        elif event in streams.FINAL_EVENTS:
            yield await _closing(writer, message_id)


async def _closing(writer: EventWriter, message_id: str) -> str:
    """The final events, from the stored reply (its terminal status is written before the
    final live event is published)."""
    snapshot = await sync_to_async(_snapshot_by_id)(message_id)
    return writer.closing(snapshot["status"], output_of(snapshot), _error_of(snapshot))


def _snapshot_by_id(message_id: str) -> dict:
    try:
        return snapshot_of(Message.objects.get(pk=message_id))
    finally:
        connection_give_back()


def _reload(message_id: str) -> Message:
    try:
        return Message.objects.get(pk=message_id)
    finally:
        connection_give_back()


async def wait_for(message_id: str) -> None:
    async for item in streams.reply_follow(message_id, after="0", block_ms=15000):
        if item is not None and item[1] in streams.FINAL_EVENTS:
            return


# --- Its input items ------------------------------------------------------------------------


def _input_turns(reply: Message) -> list[Message]:
    """The turns the call that created ``reply`` sent: its branch after the previous reply
    (a message written by a job), oldest first."""
    path = message_path(message=reply)[:-1]
    start = 0
    for index, message in enumerate(path):
        if message.role == MessageRole.ASSISTANT and message.job_id is not None:
            start = index + 1
    return path[start:]


def _items_of(message: Message) -> list[dict]:
    """A stored turn as Responses input items: a message item for its text and images, a
    ``function_call`` item per tool call, a ``function_call_output`` item per tool result."""
    key = uuid.UUID(str(message.pk)).hex
    assistant = message.role == MessageRole.ASSISTANT
    content, items = [], []
    for index, part in enumerate(parts_load(message.parts) or (TextPart(message.content),)):
        if isinstance(part, TextPart) and part.text:
            kind = "output_text" if assistant else "input_text"
            content.append(
                {"type": kind, "text": part.text, **({"annotations": []} if assistant else {})}
            )
        elif isinstance(part, ImagePart):
            content.append(
                {"type": "input_image", "image_url": part.data_url, "detail": part.detail or "auto"}
            )
        elif isinstance(part, ToolCallPart):
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{key}_{index}",
                    "call_id": part.id,
                    "name": part.name,
                    "arguments": part.arguments,
                    "status": "completed",
                }
            )
        elif isinstance(part, ToolResultPart):
            items.append(
                {
                    "type": "function_call_output",
                    "id": f"fco_{key}_{index}",
                    "call_id": part.tool_call_id,
                    "output": part.content,
                    "status": "completed",
                }
            )
    if content:
        message_item = {
            "type": "message",
            "id": f"msg_{key}",
            "role": message.role,
            "status": "completed",
            "content": content,
        }
        items.insert(0, message_item)
    return items


def input_items(reply: Message) -> list[dict]:
    """``GET /v1/responses/{id}/input_items``: what the response's call sent, oldest first
    (the instructions are the response's own field, as in OpenAI's API)."""
    return [item for message in _input_turns(reply) for item in _items_of(message)]
