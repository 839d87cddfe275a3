"""OpenAI Responses (``/v1/responses``) for text, on Parley's own pieces.

* ``store: true`` (the default): the response is an assistant message in a Parley
  conversation, written by a ``llm.completion`` job like any conversation reply. A
  ``previous_response_id`` chain is one conversation. ``background: true`` answers at once
  with the queued response; otherwise the request follows the job until it ends (``stream``
  relays it as Responses events). The job survives the client going away and worker crashes.
* ``store: false``: the reply is called through the gateway like a chat completion and
  nothing but its accounting record is kept.
* ``GET /v1/responses/{id}`` (``?stream=true&starting_after=N`` replays the events after
  sequence number N, then follows the live ones), ``POST .../cancel`` (background responses)
  and ``DELETE`` (the response's conversation, i.e. its whole chain).

Events are numbered by their place in the reply's stream, so a resumed stream continues
exactly where the client left off."""

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from jobs.models import Job
from jobs.services import job_cancel
from llm import streams
from llm.compat import openai_chat
from llm.compat.auth import caller_authenticate
from llm.compat.core import (
    OPENAI,
    GatewayError,
    GatewayRequest,
    domain_refusal,
    invalid,
    number,
    parse_json_object,
    positive_int,
)
from llm.compat.gateway import call_complete, call_open, call_stream, record_after_response
from llm.compat.http import json_response, request_body, sse_response
from llm.models import Conversation, GatewayEndpoint, Message, MessageRole, MessageStatus
from llm.providers import CompletionResult
from llm.selectors import model_get_available
from llm.services import conversation_create, conversation_delete, message_post
from project import errors as domain
from project.db import connection_give_back
from teams.models import Team
from teams.selectors import TEAM_HEADER, team_for_call

TRANSLATED = {
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "store",
    "stream",
    "background",
    "previous_response_id",
    "metadata",
    "user",
}
FINISHED = {MessageStatus.COMPLETED, MessageStatus.FAILED, MessageStatus.CANCELLED}
error_response = openai_chat.error_response


@dataclass(slots=True)
class ResponsesRequest:
    call: GatewayRequest
    store: bool
    background: bool
    previous_response_id: str | None
    instructions: str


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be a boolean.", param=name)
    return value


def responses_request_parse(body: dict) -> ResponsesRequest:
    """A Responses body as a neutral request, or a 400 naming the parameter."""
    for key in body:
        if key not in TRANSLATED and body[key] is not None:
            raise invalid(
                f"'{key}' is not supported by this server's Responses API (text only).",
                param=key,
                code="unsupported_parameter",
            )
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("'model' is required: a model id from GET /v1/models.", param="model")
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if isinstance(raw, list):  # Responses' input parts are "input_text"
        raw = [
            {"type": "message", **item} if isinstance(item, dict) and "role" in item else item
            for item in raw
        ]
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or item.get("type") != "message":
                raise invalid("Only message items are supported in 'input'.", f"input[{index}]")
    system, turns, native = openai_chat.messages_from_openai(raw, "input")
    if native:
        raise invalid("Only text input is supported.", param=native, code="unsupported_parameter")
    instructions = body.get("instructions") or ""
    if not isinstance(instructions, str):
        raise invalid("'instructions' must be a string.", param="instructions")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise invalid("'previous_response_id' must be a response id.", "previous_response_id")
    stream = _bool(body, "stream", False)
    request = GatewayRequest(
        endpoint=GatewayEndpoint.RESPONSES,
        wire_format=OPENAI,
        model=model,
        messages=turns,
        system="\n\n".join(part for part in (instructions, system) if part),
        max_tokens=positive_int(body, "max_output_tokens"),
        max_tokens_param="max_output_tokens",
        temperature=number(body, "temperature", low=0, high=2),
        top_p=number(body, "top_p", low=0, high=1),
        stream=stream,
        client_user=body.get("user") if isinstance(body.get("user"), str) else "",
        metadata=body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
    )
    parsed = ResponsesRequest(
        call=request,
        store=_bool(body, "store", True),
        background=_bool(body, "background", False),
        previous_response_id=previous,
        instructions=request.system,
    )
    if parsed.background and not parsed.store:
        raise invalid("Background responses must be stored ('store': true).", param="store")
    if previous and not parsed.store:
        raise invalid("'previous_response_id' continues a stored response.", param="store")
    if parsed.store and (len(turns) != 1 or turns[0].role != "user"):
        raise invalid(
            "A stored response takes one new user turn; continue earlier turns with "
            "'previous_response_id'.",
            param="input",
        )
    return parsed


# --- The response object and its events ---------------------------------------------------


def _response_id(message_id: uuid.UUID | str) -> str:
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


@dataclass(slots=True)
class ResponseShape:
    """What a response object says besides its reply: fixed when the response is created."""

    id: str
    model: str
    created_at: int
    instructions: str | None
    previous_response_id: str | None
    background: bool | None
    store: bool

    def body(
        self,
        status: str,
        text: str | None = None,
        usage: tuple[int, int] | None = None,
        error: dict | None = None,
    ) -> dict:
        output = []
        if text is not None:
            output.append(self.item(text, "completed" if status == "completed" else "incomplete"))
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "instructions": self.instructions or None,
            "previous_response_id": self.previous_response_id,
            "background": self.background,
            "store": self.store,
            "output": output,
            "usage": {
                "input_tokens": usage[0],
                "output_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
            if usage
            else None,
            "error": error,
            "incomplete_details": None,
            "metadata": {},
            "parallel_tool_calls": False,
            "tool_choice": "none",
            "tools": [],
            "text": {"format": {"type": "text"}},
        }

    def item(self, text: str, status: str) -> dict:
        return {
            "type": "message",
            "id": f"msg_{self.id.removeprefix('resp_')}",
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }


class EventWriter:
    """Responses stream events, numbered from 0; those numbered ``after`` or lower are
    skipped (a resumed stream)."""

    def __init__(self, shape: ResponseShape, after: int = -1) -> None:
        self.shape = shape
        self.after = after
        self.sequence = -1
        self.text: list[str] = []

    def _event(self, kind: str, **data) -> str:
        self.sequence += 1
        if self.sequence <= self.after:
            return ""
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"

    def opening(self, status: str) -> str:
        item_id = f"msg_{self.shape.id.removeprefix('resp_')}"
        return "".join(
            (
                self._event("response.created", response=self.shape.body(status)),
                self._event("response.in_progress", response=self.shape.body("in_progress")),
                self._event(
                    "response.output_item.added",
                    output_index=0,
                    item={**self.shape.item("", "in_progress"), "content": []},
                ),
                self._event(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                ),
            )
        )

    def delta(self, text: str) -> str:
        self.text.append(text)
        return self._event(
            "response.output_text.delta",
            item_id=f"msg_{self.shape.id.removeprefix('resp_')}",
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def reset(self) -> str:
        """A retry starts the reply over; Responses has no such event: the text so far is
        kept out of the final text, and the stream continues with the new attempt's."""
        self.text.clear()
        return ""

    def closing(self, status: str, usage: tuple[int, int] | None, error: dict | None) -> str:
        text = "".join(self.text)
        item_id = f"msg_{self.shape.id.removeprefix('resp_')}"
        part = {"type": "output_text", "text": text, "annotations": []}
        final = self.shape.body(status, text, usage, error)
        kind = "response.completed" if status == "completed" else "response.failed"
        return "".join(
            (
                self._event(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    part=part,
                ),
                self._event("response.output_item.done", output_index=0, item=final["output"][0]),
                self._event(kind, response=final),
            )
        )


# --- Stored responses: a conversation reply written by a job --------------------------------


def _shape_of(message: Message, *, background: bool | None = None) -> ResponseShape:
    """The response a stored reply is (one query for the previous reply in its branch)."""
    previous = None
    if message.parent_id is not None:
        previous = (
            Message.objects.filter(pk=message.parent_id).values_list("parent_id", flat=True).first()
        )
    return ResponseShape(
        id=_response_id(message.pk),
        model=message.model.slug if message.model_id else "",
        created_at=int(message.created_at.timestamp()),
        instructions=message.conversation.system_prompt,
        previous_response_id=_response_id(previous) if previous else None,
        background=background,
        store=True,
    )


def _stored_body(message: Message, shape: ResponseShape) -> dict:
    if message.status in (MessageStatus.QUEUED, MessageStatus.IN_PROGRESS):
        return shape.body(message.status)
    error = None
    if message.status != MessageStatus.COMPLETED:
        error = {"code": message.status, "message": message.error or message.status}
    usage = (message.input_tokens or 0, message.output_tokens or 0)
    return shape.body(message.status, message.content, usage, error)


def _stored_create(http_request: HttpRequest, raw: bytes) -> tuple[Message, ResponseShape]:
    try:
        user, api_key = caller_authenticate(http_request)
        parsed = responses_request_parse(parse_json_object(raw))
        try:
            team = team_for_call(
                user=user, api_key=api_key, requested=http_request.headers.get(TEAM_HEADER)
            )
            with transaction.atomic():  # a refused reply leaves no new conversation behind
                return _stored_post(
                    user, api_key, parsed, request_id=getattr(http_request, "id", ""), team=team
                )
        except domain.DomainError as exc:
            raise domain_refusal(exc) from None
    finally:
        connection_give_back()


def _stored_post(
    user, api_key, parsed: ResponsesRequest, *, request_id: str = "", team: Team | None = None
) -> tuple[Message, ResponseShape]:
    """The new user turn and its queued reply, in a new conversation or after the previous
    response of the chain (the job is enqueued when the caller's transaction commits)."""
    request = parsed.call
    if parsed.previous_response_id:
        conversation = _owned_reply(user, parsed.previous_response_id).conversation
        if conversation.model.slug != request.model:
            raise invalid(
                f"This chain uses model '{conversation.model.slug}'; continue it with the same "
                "model.",
                param="model",
            )
    else:
        model_get_available(slug=request.model)
        params = {"temperature": request.temperature, "max_tokens": request.max_tokens}
        conversation = conversation_create(
            owner=user,
            model_slug=request.model,
            title=request.messages[-1].content[:80],
            system_prompt=parsed.instructions,
            params={k: v for k, v in params.items() if v is not None},
            api_key=api_key,
            team=team,
        )
    posted = message_post(
        conversation=conversation,
        content=request.messages[-1].content,
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
    return reply, _shape_of(reply, background=parsed.background)


def _owned_reply(user, response_id: str) -> Message:
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


async def _follow(message_id: str, writer: EventWriter, status: str) -> AsyncIterator[str]:
    """The reply's events from its job's live stream (or, once that has expired, from the
    stored message), as Responses events."""
    yield writer.opening(status)
    live = await sync_to_async(streams.reply_stream_exists)(message_id)
    if not live:
        message = await sync_to_async(_reload)(message_id)
        if message.status in FINISHED:
            if message.content:
                yield writer.delta(message.content)
            yield _closing(writer, _snapshot_of(message))
            return
    async for item in streams.reply_follow(message_id, after="0", block_ms=15000):
        if item is None:
            yield ": keep-alive\n\n"
            continue
        _, event, data = item
        if event == "delta":
            yield writer.delta(data["text"])
        elif event == "reset":
            writer.reset()
        elif event == "done":
            yield _closing(writer, data["message"])
        elif event == "error":
            yield _closing(writer, data.get("message_object") or {"status": data.get("code")})


def _snapshot_of(message: Message) -> dict:
    return {
        "status": message.status,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "error": message.error,
    }


def _closing(writer: EventWriter, snapshot: dict) -> str:
    status = snapshot.get("status") or "failed"
    usage = (snapshot.get("input_tokens") or 0, snapshot.get("output_tokens") or 0)
    error = None
    if status != MessageStatus.COMPLETED:
        error = {"code": status, "message": snapshot.get("error") or status}
    return writer.closing(status, usage, error)


def _reload(message_id: str) -> Message:
    try:
        return Message.objects.get(pk=message_id)
    finally:
        connection_give_back()


async def _wait_for(message_id: str) -> None:
    async for item in streams.reply_follow(message_id, after="0", block_ms=15000):
        if item is not None and item[1] in streams.FINAL_EVENTS:
            return


# --- Not stored: one gateway call ------------------------------------------------------------


def _unstored_shape(call, parsed_request: GatewayRequest) -> ResponseShape:
    return ResponseShape(
        id=f"resp_{call.id.hex}",
        model=call.model.slug,
        created_at=int(time.time()),
        instructions=parsed_request.system or None,
        previous_response_id=None,
        background=False,
        store=False,
    )


async def _unstored_events(writer: EventWriter, relay) -> AsyncIterator[str]:
    yield writer.opening("in_progress")
    async for item in relay:
        if isinstance(item, str):
            yield writer.delta(item)
        elif isinstance(item, CompletionResult):
            yield writer.closing("completed", (item.input_tokens, item.output_tokens), None)
        else:
            error = {"code": item.code or item.kind, "message": item.message}
            yield writer.closing("failed", None, error)


def _peek_store(raw: bytes) -> bool:
    try:
        body = parse_json_object(raw)
    except GatewayError:
        return True  # the stored path reports the error, after authenticating
    return body.get("store", True) is not False


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        if not _peek_store(raw):
            return await _unstored(request, raw)
        reply, shape = await sync_to_async(_stored_create, thread_sensitive=False)(request, raw)
    except GatewayError as error:
        return error_response(error)
    message_id = str(reply.pk)
    if shape.background:
        return json_response(shape.body("queued"))
    parsed_stream = parse_json_object(raw).get("stream") is True
    if parsed_stream:
        return sse_response(_follow(message_id, EventWriter(shape), "queued"))
    await _wait_for(message_id)
    finished = await sync_to_async(_reload_with_shape, thread_sensitive=False)(message_id, shape)
    return json_response(finished)


def _reload_with_shape(message_id: str, shape: ResponseShape) -> dict:
    try:
        return _stored_body(Message.objects.get(pk=message_id), shape)
    finally:
        connection_give_back()


async def _unstored(request: HttpRequest, raw: bytes) -> HttpResponse:
    holder: dict = {}

    def parse() -> GatewayRequest:
        holder["parsed"] = responses_request_parse(parse_json_object(raw))
        return holder["parsed"].call

    call = await call_open(request, endpoint=GatewayEndpoint.RESPONSES, parse=parse)
    shape = _unstored_shape(call, call.request)
    if not call.request.stream:
        result = await call_complete(call)
        body = shape.body("completed", result.text, (result.input_tokens, result.output_tokens))
        return record_after_response(
            json_response(body, headers=call.headers()), call, result=result
        )
    relay = await call_stream(call)
    return sse_response(_unstored_events(EventWriter(shape), relay), headers=call.headers())


# --- One stored response ---------------------------------------------------------------------


def _load(http_request: HttpRequest, response_id: str) -> tuple[Message, ResponseShape]:
    try:
        user, _ = caller_authenticate(http_request)
        message = _owned_reply(user, response_id)
        return message, _shape_of(message)
    finally:
        connection_give_back()


def _cancel(http_request: HttpRequest, response_id: str) -> dict:
    try:
        user, _ = caller_authenticate(http_request)
        message = _owned_reply(user, response_id)
        if message.status in FINISHED:
            raise invalid("Only a queued or in-progress response can be cancelled.")
        job = Job.objects.filter(pk=message.job_id).first()
        if job is not None:
            try:
                job_cancel(job=job)
            except domain.DomainError as exc:
                raise domain_refusal(exc) from None
        message.refresh_from_db()
        shape = _shape_of(message, background=True)
        body = _stored_body(message, shape)
        if body["status"] in ("queued", "in_progress"):  # the worker marks the reply shortly
            body["status"] = "cancelled"
        return body
    finally:
        connection_give_back()


def _delete(http_request: HttpRequest, response_id: str) -> dict:
    try:
        user, _ = caller_authenticate(http_request)
        message = _owned_reply(user, response_id)
        conversation = Conversation.objects.get(pk=message.conversation_id)
        conversation_delete(conversation=conversation)
        return {"id": response_id, "object": "response.deleted", "deleted": True}
    finally:
        connection_give_back()


@csrf_exempt
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        if request.method == "DELETE":
            return json_response(await sync_to_async(_delete)(request, response_id))
        message, shape = await sync_to_async(_load)(request, response_id)
        if request.GET.get("stream") in ("true", "1"):
            after = request.GET.get("starting_after", "-1")
            if not after.lstrip("-").isdigit() or len(after) > 12:
                raise invalid("'starting_after' must be a sequence number.", "starting_after")
            writer = EventWriter(shape, after=int(after))
            return sse_response(_follow(str(message.pk), writer, message.status))
        return json_response(_stored_body(message, shape))
    except GatewayError as error:
        return error_response(error)


@csrf_exempt
async def response_cancel(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        return json_response(await sync_to_async(_cancel)(request, response_id))
    except GatewayError as error:
        return error_response(error)
