"""The skeleton both providers share: send one streamed request through the SDK, read its
events into one accumulator, and translate every SDK and transport failure in one place.

A provider subclass supplies only what differs between wire formats: the request body
(``build_body``), how one event changes the reply (``read_event``), how its SDK reports a
failed status (``status_error``), and its SDK's classes (``sdk``)."""

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx2

from llm.providers.base import (
    ChatRequest,
    CompletionResult,
    DeltaCallback,
    EventCallback,
    ProviderError,
    ProviderTimeout,
    TransientProviderError,
    connection_error,
    normalise_finish_reason,
)
from llm.providers.canonical import Choice, StreamEvent, ThinkingPart, ToolCall
from llm.providers.context import estimate_message_tokens, estimate_tokens
from project.tracing import current_context, provider_call_result, provider_call_span


@dataclass(frozen=True, slots=True)
class SdkClasses:
    """What a vendor SDK raises and streams with; the skeleton catches these and nothing else."""

    status_error: type[Exception]  # the server answered an error status (or an error event)
    timeout_error: type[Exception]
    connection_error: type[Exception]
    api_error: type[Exception]  # any other SDK error: an error object inside the stream
    stream: type
    async_stream: type


class ReplyAccumulator:
    """Everything a streamed reply has said so far: text, ids, usage, finish, tool calls, and
    the events not yet handed on (``events``: tool-call fragments, logprobs)."""

    __slots__ = (
        "cache_read_tokens",
        "cache_write_tokens",
        "events",
        "finish_reason",
        "finished",
        "first_token_at",
        "input_tokens",
        "logprobs",
        "more_choices",
        "output_tokens",
        "parts",
        "reasoning_tokens",
        "request",
        "response_id",
        "response_model",
        "started",
        "stop_sequence",
        "structured",
        "thinking",
        "tool_calls",
    )

    def __init__(self, request: ChatRequest | None = None) -> None:
        self.request = request
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.parts: list[str] = []
        # By the stream's index: {"text", "signature", "redacted"}.
        self.thinking: dict[int, dict] = {}
        self.response_id = ""
        self.response_model = ""  # the model the provider says answered (for traces)
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_tokens = 0
        # By the stream's index: {"id", "name", "arguments"} (arguments as JSON text).
        self.tool_calls: dict[int, dict] = {}
        self.events: list = []
        self.logprobs: list[dict] = []
        self.more_choices: list[dict] = []
        self.structured: dict = {}  # provider-specific state for structured output
        self.finished = False

    def first_output(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def text(self, piece: str) -> str:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.parts.append(piece)
        return piece

    def take_events(self) -> list:
        events, self.events = self.events, []
        return events

    def result(self, request: ChatRequest) -> CompletionResult:
        if not self.finished:
            raise TransientProviderError("The provider's stream ended before the reply finished.")
        text = "".join(self.parts)
        input_tokens, output_tokens = self.input_tokens, self.output_tokens
        if input_tokens is None:  # some compatible servers send no usage: estimate, never 0
            input_tokens = sum(estimate_message_tokens(m) for m in request.messages)
            input_tokens += estimate_tokens(request.system) if request.system else 0
        if output_tokens is None:
            output_tokens = estimate_tokens(text)
        finished = time.perf_counter()
        calls = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return CompletionResult(
            text=text,
            finish_reason=normalise_finish_reason(self.finish_reason),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            response_id=self.response_id,
            time_to_first_token_ms=round((self.first_token_at - self.started) * 1000)
            if self.first_token_at is not None
            else None,
            latency_ms=round((finished - self.started) * 1000),
            tool_calls=tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in calls),
            stop_sequence=self.stop_sequence,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
            logprobs={"content": self.logprobs, "refusal": None} if self.logprobs else None,
            more_choices=tuple(
                Choice(
                    text=c["text"],
                    finish_reason=c["finish_reason"],
                    tool_calls=tuple(ToolCall(*call) for call in c["tool_calls"]),
                    logprobs=c["logprobs"],
                )
                for c in self.more_choices
            ),
            thinking=tuple(
                ThinkingPart(b["text"], b["signature"], b["redacted"])
                for _, b in sorted(self.thinking.items())
            ),
        )


class StreamingChatProvider:
    """One streamed call per reply through the SDK's own request, SSE decoding and error
    handling, reading events as plain dicts (a pydantic model per token was most of the
    layer's cost, bench/README.md). Built with a sync client (``complete``) or an async one
    (``astream``); the factory decides which."""

    name: ClassVar[str]
    path: ClassVar[str]
    sdk: ClassVar[SdkClasses]

    def __init__(self, client: Any) -> None:
        self._client = client

    # --- what each wire format supplies --------------------------------------------------
    def build_body(self, request: ChatRequest) -> dict:
        raise NotImplementedError

    def read_event(self, event: dict, reply: ReplyAccumulator) -> str | None:
        """Apply one stream event to ``reply``; return the text it adds, if any."""
        raise NotImplementedError

    def read_response(self, body: dict, reply: ReplyAccumulator) -> None:
        """Apply a whole (non-streamed) response body to ``reply``."""
        raise NotImplementedError

    def status_error(self, exc: Any) -> ProviderError:
        """The ProviderError for the SDK's status error ``exc``."""
        raise NotImplementedError

    # --- the shared skeleton --------------------------------------------------------------
    def _body(self, request: ChatRequest, *, stream: bool = True) -> dict:
        body = self.build_body(request)
        if not stream:
            body.pop("stream_options", None)
        body.update(request.passthrough)
        body["stream"] = stream
        return body

    @contextlib.contextmanager
    def _translated_errors(self, reply: ReplyAccumulator) -> Iterator[None]:
        sdk = self.sdk
        try:
            yield
        except sdk.status_error as exc:
            raise self.status_error(exc) from None
        except sdk.timeout_error:
            raise ProviderTimeout("The provider did not answer in time.") from None
        except sdk.connection_error:
            raise connection_error(reply.response_id) from None
        except sdk.api_error as exc:  # an error object inside a stream that answered 200
            message = getattr(exc, "message", str(exc))
            raise TransientProviderError(f"The provider failed mid-stream: {message}") from None
        except httpx2.TimeoutException:
            raise ProviderTimeout("The provider stopped sending in time.") from None
        except httpx2.TransportError:
            raise connection_error(reply.response_id) from None

    def _span(self, request: ChatRequest, *, current: bool = True, parent=None):
        """The call's GenAI span (project.tracing); a no-op span when tracing is off."""
        return provider_call_span(
            system=self.name,
            request_model=request.model,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            messages=request.messages,
            current=current,
            parent=parent,
        )

    def _finish(self, span, reply: ReplyAccumulator, request: ChatRequest) -> CompletionResult:
        result = reply.result(request)
        provider_call_result(span, result, response_model=reply.response_model)
        return result

    def complete(
        self,
        request: ChatRequest,
        on_delta: DeltaCallback | None = None,
        on_event: EventCallback | None = None,
    ) -> CompletionResult:
        reply = ReplyAccumulator(request)
        with self._span(request) as span:
            with self._translated_errors(reply):
                stream = self._client.post(
                    self.path,
                    body=self._body(request),
                    cast_to=object,
                    stream=True,
                    stream_cls=self.sdk.stream[object],
                )
                with stream:
                    for event in stream:
                        text = self.read_event(event, reply)
                        if text and on_delta is not None:
                            on_delta(text)
                        if reply.events:
                            events = reply.take_events()
                            if on_event is not None:
                                for item in events:
                                    on_event(item)
            return self._finish(span, reply, request)

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        # The trace context of the caller now: the body below runs when the stream is first
        # read, which under ASGI is after the request's span has been closed.
        return self._astream(request, current_context())

    async def _astream(self, request: ChatRequest, parent_context) -> AsyncIterator[StreamEvent]:
        reply = ReplyAccumulator(request)
        with self._span(request, current=False, parent=parent_context) as span:
            with self._translated_errors(reply):
                stream = await self._client.post(
                    self.path,
                    body=self._body(request),
                    cast_to=object,
                    stream=True,
                    stream_cls=self.sdk.async_stream[object],
                )
                async with stream:
                    async for event in stream:
                        text = self.read_event(event, reply)
                        if text:
                            yield text
                        if reply.events:
                            for item in reply.take_events():
                                yield item
            result = self._finish(span, reply, request)
        yield result

    async def acomplete(self, request: ChatRequest) -> CompletionResult:
        """The whole reply in one non-streamed response (for callers that want no deltas:
        one JSON body costs less to read than a stream of events)."""
        reply = ReplyAccumulator(request)
        with self._span(request, current=False) as span:
            with self._translated_errors(reply):
                body = await self._client.post(
                    self.path, body=self._body(request, stream=False), cast_to=object
                )
            reply.first_token_at = time.perf_counter()
            if not isinstance(body, dict):
                raise TransientProviderError(
                    "The provider answered with something other than JSON."
                )
            self.read_response(body, reply)
            return self._finish(span, reply, request)
