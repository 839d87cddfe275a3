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
from dataclasses import dataclass, field

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
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
    image_from_url,
    integer,
    invalid,
    number,
    openai_response_format,
    openai_tool_choice,
    parse_json_object,
    positive_int,
    tool_of_function,
)
from llm.compat.gateway import call_complete, call_open, call_stream, record_after_response
from llm.compat.http import json_response, request_body, sse_response
from llm.models import Conversation, GatewayEndpoint, Message, MessageRole, MessageStatus
from llm.providers import ChatMessage, CompletionResult
from llm.providers.canonical import (
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
)
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
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "include",
    "reasoning",
    "truncation",
    "service_tier",
    "top_logprobs",
    "prompt_cache_key",
    "safety_identifier",
    "stream_options",
}
# What ``include`` may name (OpenAI's list); a value about items Parley never produces (file
# search results, computer calls...) has nothing to add and is accepted.
INCLUDE_VALUES = {
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
}
FINISHED = {MessageStatus.COMPLETED, MessageStatus.FAILED, MessageStatus.CANCELLED}
INCOMPLETE_REASON = {"length": "max_output_tokens", "content_filter": "content_filter"}
error_response = openai_chat.error_response


@dataclass(slots=True)
class ResponsesRequest:
    call: GatewayRequest
    store: bool
    background: bool
    previous_response_id: str | None
    instructions: str
    # What the response object echoes back.
    tools: list = field(default_factory=list)
    tool_choice: object = "auto"
    parallel_tool_calls: bool = True
    text_format: dict = field(default_factory=lambda: {"type": "text"})
    # One user text turn and nothing else: what a stored conversation reply can hold.
    plain: bool = True


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be a boolean.", param=name)
    return value


def _message_parts(content: object, where: str) -> list:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise invalid("A message's content must be a string or a list of parts.", param=where)
    parts = []
    for index, part in enumerate(content):
        param = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise invalid("A text part needs a 'text' string.", param=param)
            parts.append(TextPart(part["text"]))
        elif kind == "input_image":
            detail = part.get("detail") if isinstance(part.get("detail"), str) else ""
            parts.append(image_from_url(part.get("image_url"), f"{param}.image_url", detail))
        elif kind == "refusal":
            continue
        else:
            raise invalid(
                f"Content parts of type '{kind}' are not supported; use input_text or input_image.",
                param=f"{param}.type",
                code="unsupported_parameter",
            )
    return parts


def _append(turns: list[ChatMessage], role: str, parts: list) -> None:
    """Add parts to the conversation, joining a tool result or call to the turn before it
    when that turn is of the same role (one assistant turn holds all its calls)."""
    if not parts:
        return
    if (
        turns
        and turns[-1].role == role
        and any(isinstance(p, (ToolCallPart, ToolResultPart)) for p in (*turns[-1].parts, *parts))
    ):
        turns[-1] = ChatMessage(role, parts=(*turns[-1].all_parts, *parts))
    elif len(parts) == 1 and type(parts[0]) is TextPart:
        turns.append(ChatMessage(role, parts[0].text))
    else:
        turns.append(ChatMessage(role, parts=tuple(parts)))


def input_items(raw: object) -> tuple[str, list[ChatMessage]]:
    """Responses ``input`` (a string, or message, function_call and function_call_output
    items) as system text and canonical turns."""
    if isinstance(raw, str):
        return "", [ChatMessage("user", raw)]
    if not isinstance(raw, list) or not raw:
        raise invalid("'input' must be a string or a non-empty list of items.", param="input")
    if len(raw) > settings.LLM_MAX_MESSAGES_PER_CONVERSATION:
        raise invalid("'input' holds too many items.", param="input")
    system: list[str] = []
    turns: list[ChatMessage] = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise invalid("Each input item must be an object.", param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(
                    "A message's role must be user, assistant, system or developer.",
                    param=f"{where}.role",
                )
            parts = _message_parts(item.get("content"), f"{where}.content")
            if role in ("system", "developer"):
                system.append("".join(p.text for p in parts if isinstance(p, TextPart)))
            else:
                _append(turns, role, parts)
        elif kind == "function_call":
            name, call_id = item.get("name"), item.get("call_id")
            arguments = item.get("arguments", "{}")
            if not all(isinstance(v, str) and v for v in (name, call_id)) or not isinstance(
                arguments, str
            ):
                raise invalid(
                    "A function_call item needs call_id, name and arguments strings.", param=where
                )
            _append(turns, "assistant", [ToolCallPart(id=call_id, name=name, arguments=arguments)])
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise invalid("A function_call_output item needs a call_id.", param=where)
            parts = _message_parts(output if output is not None else "", f"{where}.output")
            text = "".join(p.text for p in parts if isinstance(p, TextPart))
            images = tuple(p for p in parts if not isinstance(p, TextPart))
            _append(turns, "user", [ToolResultPart(call_id, content=text, images=images)])
        elif kind == "reasoning":
            continue  # another model's reasoning summary: nothing a provider can be given
        else:
            raise invalid(
                f"Input items of type '{kind}' are not supported; use message, function_call "
                "and function_call_output items.",
                param=f"{where}.type",
                code="unsupported_parameter",
            )
    if not turns:
        raise invalid("'input' must hold at least one user message.", param="input")
    return "\n\n".join(system), turns


def _tools(body: dict) -> tuple[tuple[Tool, ...], list]:
    raw = body.get("tools")
    if raw is None:
        return (), []
    if not isinstance(raw, list) or len(raw) > 128:
        raise invalid("'tools' must be a list of up to 128 tools.", param="tools")
    tools = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise invalid(
                f"Only function tools are supported (not '{kind}').",
                param="tools",
                code="unsupported_parameter",
            )
        tools.append(tool_of_function(tool, f"tools[{index}]"))
    echo = [
        {
            "type": "function",
            "name": t.name,
            "description": t.description or None,
            "parameters": dict(t.parameters),
            "strict": t.strict if t.strict is not None else True,
        }
        for t in tools
    ]
    return tuple(tools), echo


def _text_format(body: dict) -> tuple[ResponseFormat | None, dict]:
    text = body.get("text")
    if text is None:
        return None, {"type": "text"}
    if not isinstance(text, dict):
        raise invalid("'text' must be an object.", param="text")
    if text.get("verbosity") not in (None, "medium"):
        raise invalid(
            "Only the default verbosity (medium) is supported.",
            param="text.verbosity",
            code="unsupported_parameter",
        )
    fmt = text.get("format")
    if fmt is None:
        return None, {"type": "text"}
    return openai_response_format(fmt, "text.format"), fmt


def _include(body: dict) -> bool:
    """Whether ``include`` asks for logprobs; a 400 for a value OpenAI does not define."""
    include = body.get("include")
    if include is None:
        return False
    if not isinstance(include, list):
        raise invalid("'include' must be a list.", param="include")
    for value in include:
        if not isinstance(value, str) or value not in INCLUDE_VALUES:
            raise invalid(f"'include' has an unknown value: {str(value)[:80]!r}.", "include")
    return "message.output_text.logprobs" in include


def _reasoning(body: dict) -> str | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise invalid("'reasoning' must be an object.", param="reasoning")
    effort = reasoning.get("effort")
    if effort not in (None, "minimal", "low", "medium", "high"):
        raise invalid("Effort must be minimal, low, medium or high.", "reasoning.effort")
    return effort


def responses_request_parse(body: dict) -> ResponsesRequest:
    """A Responses body as a neutral request, or a 400 naming the parameter."""
    for key in body:
        if key not in TRANSLATED and body[key] is not None:
            raise invalid(
                f"'{key}' is not supported by this server's Responses API.",
                param=key,
                code="unsupported_parameter",
            )
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise invalid("'model' is required: a model id from GET /v1/models.", param="model")
    system, turns = input_items(body.get("input"))
    instructions = body.get("instructions") or ""
    if not isinstance(instructions, str):
        raise invalid("'instructions' must be a string.", param="instructions")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise invalid("'previous_response_id' must be a response id.", "previous_response_id")
    if body.get("truncation") not in (None, "disabled", "auto"):
        raise invalid("'truncation' must be disabled or auto.", param="truncation")
    stream = _bool(body, "stream", False)
    tools, tools_echo = _tools(body)
    response_format, format_echo = _text_format(body)
    parallel = _bool(body, "parallel_tool_calls", True)
    logprobs = _include(body)
    options = {
        "tools": tools,
        "tool_choice": openai_tool_choice(body.get("tool_choice")),
        "parallel_tool_calls": parallel if tools and "parallel_tool_calls" in body else None,
        "response_format": response_format,
        "reasoning_effort": _reasoning(body),
        "logprobs": logprobs,
        "top_logprobs": integer(body, "top_logprobs", low=0, high=20) if logprobs else None,
        "param_names": {"logprobs": "include", "top_logprobs": "top_logprobs"},
    }
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
        options={key: value for key, value in options.items() if value is not None},
        hints={k: body[k] for k in ("service_tier", "prompt_cache_key") if body.get(k)},
    )
    plain = (
        len(turns) == 1
        and turns[0].role == "user"
        and not turns[0].parts
        and not tools
        and response_format is None
        and not logprobs
    )
    parsed = ResponsesRequest(
        call=request,
        store=_bool(body, "store", True),
        background=_bool(body, "background", False),
        previous_response_id=previous,
        instructions=request.system,
        tools=tools_echo,
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=parallel,
        text_format=format_echo,
        plain=plain,
    )
    if parsed.background and not parsed.store:
        raise invalid("Background responses must be stored ('store': true).", param="store")
    if previous and not parsed.store:
        raise invalid("'previous_response_id' continues a stored response.", param="store")
    if parsed.store and not plain and (previous or parsed.background):
        param = "background" if parsed.background else "previous_response_id"
        raise invalid(
            f"'{param}' takes one user text turn; a response with tools, structured output, "
            "images or several input turns is answered at once: send the whole input instead.",
            param=param,
            code="unsupported_parameter",
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


@dataclass(frozen=True, slots=True)
class ReplyOutput:
    """What a finished (or failed) reply said, from a CompletionResult or a stored message."""

    text: str = ""
    tool_calls: tuple = ()
    finish_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    logprobs: tuple = ()

    @classmethod
    def of(cls, result: CompletionResult) -> "ReplyOutput":
        return cls(
            text=result.text,
            tool_calls=result.tool_calls,
            finish_reason=result.finish_reason,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_tokens=result.cache_read_tokens,
            reasoning_tokens=result.reasoning_tokens,
            logprobs=tuple((result.logprobs or {}).get("content") or ()),
        )

    @property
    def status(self) -> str:
        return "incomplete" if self.finish_reason in INCOMPLETE_REASON else "completed"


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
    tools: list = field(default_factory=list)
    tool_choice: object = "auto"
    parallel_tool_calls: bool = True
    text_format: dict = field(default_factory=lambda: {"type": "text"})
    metadata: dict | None = None

    @property
    def message_id(self) -> str:
        return f"msg_{self.id.removeprefix('resp_')}"

    def call_item_id(self, index: int) -> str:
        return f"fc_{self.id.removeprefix('resp_')}_{index}"

    def body(
        self, status: str, reply: ReplyOutput | None = None, error: dict | None = None
    ) -> dict:
        """The response object; ``status`` is the job's (queued, in_progress, completed,
        failed, cancelled) and a completed reply cut short is ``incomplete``."""
        output: list[dict] = []
        incomplete = None
        if reply is not None:
            if status == "completed":
                status = reply.status
            if status == "incomplete":
                incomplete = {"reason": INCOMPLETE_REASON[reply.finish_reason]}
            item_status = "completed" if status == "completed" else "incomplete"
            if reply.text or not reply.tool_calls:
                output.append(self.item(reply.text, item_status, reply.logprobs))
            output += [self.call_item(i, c, "completed") for i, c in enumerate(reply.tool_calls)]
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
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
                "input_tokens_details": {"cached_tokens": reply.cached_tokens},
                "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            }
            if reply is not None and (reply.input_tokens or reply.output_tokens)
            else None,
            "error": error,
            "incomplete_details": incomplete,
            "metadata": self.metadata or {},
            "parallel_tool_calls": self.parallel_tool_calls,
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "text": {"format": self.text_format},
        }

    def item(self, text: str, status: str, logprobs: tuple = ()) -> dict:
        part = {"type": "output_text", "text": text, "annotations": []}
        if logprobs:
            part["logprobs"] = list(logprobs)
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": [part],
        }

    def call_item(self, index: int, call, status: str) -> dict:
        return {
            "type": "function_call",
            "id": self.call_item_id(index),
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": status,
        }


class EventWriter:
    """Responses stream events, numbered from 0; those numbered ``after`` or lower are
    skipped (a resumed stream). Items open as the reply reaches them: the message item with
    its first text, a function_call item with each tool call; each is closed before the next
    opens, and all before the final event."""

    def __init__(self, shape: ResponseShape, after: int = -1) -> None:
        self.shape = shape
        self.after = after
        self.sequence = -1
        self.text: list[str] = []
        self.output_index = -1
        self.open = ""  # "message", "function_call" or ""
        self.call: dict = {}
        self.calls = 0
        self.message_opened = False

    def _event(self, kind: str, **data) -> str:
        self.sequence += 1
        if self.sequence <= self.after:
            return ""
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"

    def opening(self, status: str) -> str:
        return self._event("response.created", response=self.shape.body(status)) + self._event(
            "response.in_progress", response=self.shape.body("in_progress")
        )

    def _open_message(self) -> str:
        self.output_index += 1
        self.open = "message"
        self.message_opened = True
        item_id = self.shape.message_id
        return self._event(
            "response.output_item.added",
            output_index=self.output_index,
            item={**self.shape.item("", "in_progress"), "content": []},
        ) + self._event(
            "response.content_part.added",
            item_id=item_id,
            output_index=self.output_index,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": []},
        )

    def _close(self, status: str = "completed") -> str:
        if self.open == "message":
            text = "".join(self.text)
            item_id = self.shape.message_id
            part = {"type": "output_text", "text": text, "annotations": []}
            events = (
                self._event(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=self.output_index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=self.output_index,
                    content_index=0,
                    part=part,
                ),
                self._event(
                    "response.output_item.done",
                    output_index=self.output_index,
                    item=self.shape.item(text, status),
                ),
            )
        elif self.open == "function_call":
            call = self.call
            events = (
                self._event(
                    "response.function_call_arguments.done",
                    item_id=call["id"],
                    output_index=self.output_index,
                    name=call["name"],
                    arguments=call["arguments"],
                ),
                self._event(
                    "response.output_item.done",
                    output_index=self.output_index,
                    item={**call, "status": "completed"},
                ),
            )
        else:
            return ""
        self.open = ""
        return "".join(events)

    def delta(self, text: str) -> str:
        opened = "" if self.open == "message" else self._close() + self._open_message()
        self.text.append(text)
        return opened + self._event(
            "response.output_text.delta",
            item_id=self.shape.message_id,
            output_index=self.output_index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def tool_start(self, event: ToolCallStart) -> str:
        closed = self._close()
        self.output_index += 1
        self.open = "function_call"
        self.call = {
            "type": "function_call",
            "id": self.shape.call_item_id(self.calls),
            "call_id": event.id,
            "name": event.name,
            "arguments": "",
            "status": "in_progress",
        }
        self.calls += 1
        return closed + self._event(
            "response.output_item.added", output_index=self.output_index, item=dict(self.call)
        )

    def tool_delta(self, event: ToolCallDelta) -> str:
        self.call["arguments"] += event.arguments
        return self._event(
            "response.function_call_arguments.delta",
            item_id=self.call["id"],
            output_index=self.output_index,
            delta=event.arguments,
        )

    def reset(self) -> str:
        """A retry starts the reply over; Responses has no such event: the text so far is
        kept out of the final text, and the stream continues with the new attempt's."""
        self.text.clear()
        return ""

    def closing(self, status: str, reply: ReplyOutput | None, error: dict | None) -> str:
        """Close what is open and end with response.completed, .incomplete or .failed. A
        stored reply's text is what the writer streamed (a retry's reset drops the rest)."""
        if reply is not None and self.message_opened:  # what was streamed is the text
            reply = ReplyOutput(**{**_fields(reply), "text": "".join(self.text)})
        final = self.shape.body(status, reply, error)
        opening = ""
        if self.output_index < 0:  # nothing was said: an empty message, as OpenAI sends
            opening = self._open_message()
        item_status = "completed" if final["status"] == "completed" else "incomplete"
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            final["status"], "response.failed"
        )
        return opening + self._close(item_status) + self._event(kind, response=final)


def _fields(reply: ReplyOutput) -> dict:
    return {name: getattr(reply, name) for name in ReplyOutput.__dataclass_fields__}


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
    return shape.body(message.status, _stored_output(_snapshot_of(message)), error)


def _stored_output(snapshot: dict) -> ReplyOutput:
    return ReplyOutput(
        text=snapshot.get("content") or "",
        finish_reason=snapshot.get("finish_reason") or "stop",
        input_tokens=snapshot.get("input_tokens") or 0,
        output_tokens=snapshot.get("output_tokens") or 0,
    )


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
        "content": message.content,
        "finish_reason": message.finish_reason,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "error": message.error,
    }


def _closing(writer: EventWriter, snapshot: dict) -> str:
    status = snapshot.get("status") or "failed"
    error = None
    if status != MessageStatus.COMPLETED:
        error = {"code": status, "message": snapshot.get("error") or status}
    return writer.closing(status, _stored_output(snapshot), error)


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


def unstored_shape(parsed: ResponsesRequest, *, id: str, model: str) -> ResponseShape:
    return ResponseShape(
        id=id,
        model=model,
        created_at=int(time.time()),
        instructions=parsed.instructions or None,
        previous_response_id=None,
        background=False,
        store=False,
        tools=parsed.tools,
        tool_choice=parsed.tool_choice,
        parallel_tool_calls=parsed.parallel_tool_calls,
        text_format=parsed.text_format,
        metadata=parsed.call.metadata,
    )


async def response_events(writer: EventWriter, relay: AsyncIterator) -> AsyncIterator[str]:
    """Canonical stream events as Responses stream events, in the order OpenAI's SDK
    expects (see ``EventWriter``)."""
    yield writer.opening("in_progress")
    async for item in relay:
        if isinstance(item, str):
            yield writer.delta(item)
        elif isinstance(item, ToolCallStart):
            yield writer.tool_start(item)
        elif isinstance(item, ToolCallDelta):
            yield writer.tool_delta(item)
        elif isinstance(item, CompletionResult):
            yield writer.closing("completed", ReplyOutput.of(item), None)
        elif isinstance(item, GatewayError):
            error = {"code": item.code or item.kind, "message": item.message}
            yield writer.closing("failed", None, error)


def _stored_path(raw: bytes) -> bool:
    """Whether the request is one a stored conversation reply can hold (store on, one user
    text turn, no tools or structured output); anything else is answered by one gateway call
    and is not stored."""
    try:
        body = parse_json_object(raw)
    except GatewayError:
        return True  # the stored path reports the error, after authenticating
    if body.get("store", True) is False:
        return False
    if body.get("previous_response_id") or body.get("background"):
        return True  # only the stored path continues a chain or runs in the background
    try:
        return responses_request_parse(body).plain
    except GatewayError:
        return True


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        if not _stored_path(raw):
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
    try:
        await _wait_for(message_id)
    except redis.RedisError:
        # The reply is stored, and reconcile delivers it once Redis is back: answer with the
        # response as it stands (``queued``, its id to GET later) rather than a 503 whose
        # retry would post the same turn a second time.
        pass
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
    shape = unstored_shape(holder["parsed"], id=f"resp_{call.id.hex}", model=call.model.slug)
    if not call.request.stream:
        result = await call_complete(call)
        body = shape.body("completed", ReplyOutput.of(result))
        return record_after_response(
            json_response(body, headers=call.headers()), call, result=result
        )
    relay = await call_stream(call)
    return sse_response(response_events(EventWriter(shape), relay), headers=call.headers())


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
