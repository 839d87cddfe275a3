"""The OpenAI Responses response object and its stream events, from a reply however it was
written (one gateway call, or a stored conversation reply followed from its job's stream).
Pure: no database, no I/O."""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from llm.compat.core import GatewayError
from llm.compat.responses_request import (
    ResponsesRequest,
    text_format_echo,
    tool_choice_echo,
    tools_echo,
)
from llm.providers import CompletionResult
from llm.providers.canonical import ToolCallDelta, ToolCallStart

INCOMPLETE_REASON = {"length": "max_output_tokens", "content_filter": "content_filter"}


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
        # Tool calls the stream did not carry (a reply replayed from its stored message).
        for index, call in enumerate(reply.tool_calls if reply else (), start=0):
            if index >= self.calls:
                opening += self.tool_start(ToolCallStart(index=index, id=call.id, name=call.name))
                opening += self.tool_delta(ToolCallDelta(index=index, arguments=call.arguments))
        if self.output_index < 0:  # nothing was said: an empty message, as OpenAI sends
            opening += self._open_message()
        item_status = "completed" if final["status"] == "completed" else "incomplete"
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            final["status"], "response.failed"
        )
        return opening + self._close(item_status) + self._event(kind, response=final)


def _fields(reply: ReplyOutput) -> dict:
    return {name: getattr(reply, name) for name in ReplyOutput.__dataclass_fields__}


def echo_fields(options: dict[str, Any], parallel_tool_calls: bool = True) -> dict[str, Any]:
    """What a response object echoes of the call's canonical options (``ChatRequest``
    keyword arguments: a parsed request's, or a stored reply's ``call_options`` loaded)."""
    return {
        "tools": tools_echo(options.get("tools", ())),
        "tool_choice": tool_choice_echo(options.get("tool_choice")),
        "parallel_tool_calls": options.get("parallel_tool_calls", parallel_tool_calls),
        "text_format": text_format_echo(options.get("response_format")),
    }


def unstored_shape(parsed: ResponsesRequest, *, id: str, model: str) -> ResponseShape:
    return ResponseShape(
        id=id,
        model=model,
        created_at=int(time.time()),
        instructions=parsed.instructions or None,
        previous_response_id=None,
        background=False,
        store=False,
        metadata=parsed.call.metadata,
        **echo_fields(parsed.call.options, parsed.parallel_tool_calls),
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
