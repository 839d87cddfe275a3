"""The one provider-neutral call model: every wire format (OpenAI Chat Completions, Anthropic
Messages, OpenAI Responses, on the client side and on the provider side) is translated to and
from these types by pure functions, so a feature works across families once both translators
know it.

Conventions:
* A message's ``content`` is its text; ``parts`` (when not empty) is its whole content instead,
  as text, image, tool-call and tool-result parts in order.
* Tool results are parts of a ``user`` message (Anthropic's shape); the OpenAI translators
  turn each into a ``tool`` message and back.
* Tool-call arguments are kept as the JSON text the model produced (OpenAI's shape); Anthropic
  translators parse and serialise them.
* ``finish_reason`` is in OpenAI's vocabulary (stop, length, tool_calls, content_filter);
  ``stop_sequence`` says which stop sequence ended the reply, when one did.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# --- Message parts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    cache: bool = False  # a prompt-cache breakpoint after this part (Anthropic cache_control)


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL, or inline as base64 ``data`` with its ``media_type``."""

    url: str = ""
    media_type: str = ""
    data: str = ""
    detail: str = ""  # OpenAI's detail hint (low/high/auto); no Anthropic equivalent
    cache: bool = False

    @property
    def data_url(self) -> str:
        return self.url or f"data:{self.media_type};base64,{self.data}"


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    tool_call_id: str
    content: str = ""  # the result's text
    images: tuple[ImagePart, ...] = ()
    is_error: bool = False
    cache: bool = False


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """Anthropic's extended thinking in an assistant turn, kept to be sent back as it came
    (its signature proves it to the provider); ``redacted`` is a redacted block's data."""

    text: str = ""
    signature: str = ""
    redacted: str = ""


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["user", "assistant"]
    content: str = ""
    parts: tuple[Part, ...] = ()

    @property
    def text(self) -> str:
        """The message's text, whatever its parts (what token estimates and records use)."""
        if not self.parts:
            return self.content
        pieces = []
        for part in self.parts:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, ToolCallPart):
                pieces.append(f"{part.name}({part.arguments})")
            elif isinstance(part, ToolResultPart):
                pieces.append(part.content)
        return "\n".join(pieces)

    @property
    def all_parts(self) -> tuple[Part, ...]:
        if self.parts:
            return self.parts
        return (TextPart(self.content),) if self.content else ()


# --- Request options -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None
    cache: bool = False


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """auto: the model decides; none: no tool; required: some tool; tool: the tool ``name``."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str = ""


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: any JSON object, or JSON that validates against ``schema``."""

    type: Literal["json_object", "json_schema"]
    name: str = "response"
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str  # the provider's own model name
    messages: list[ChatMessage]
    max_tokens: int
    system: str = ""
    system_cache: bool = False  # a prompt-cache breakpoint after the system prompt
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None  # OpenAI's low/medium/high
    thinking_budget: int | None = None  # Anthropic's extended thinking, in tokens
    # The client's name for each canonical field it set (e.g. {"stop": "stop_sequences"}), so
    # a refusal names the field the client sent.
    param_names: Mapping[str, str] = field(default_factory=dict)
    # Fields of the provider's own wire format sent as given, over what the fields above build.
    # Only a caller that already speaks the provider's format sets them; nothing translates them.
    passthrough: Mapping[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.param_names.get(name, name)


# --- Replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # every prompt token, cached ones included
    output_tokens: int = 0  # reasoning tokens included
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    reasoning_tokens: int = 0  # of output_tokens


@dataclass(frozen=True, slots=True)
class Choice:
    """One more candidate reply, when ``n`` > 1 asked for several."""

    text: str
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CompletionResult:
    text: str
    finish_reason: str  # OpenAI's vocabulary: stop, length, content_filter, tool_calls
    input_tokens: int  # every prompt token (cached ones included)
    output_tokens: int
    response_id: str
    time_to_first_token_ms: int | None
    latency_ms: int
    tool_calls: tuple[ToolCall, ...] = ()
    stop_sequence: str | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # OpenAI's logprobs object ({"content": [...]}) when asked for and sent.
    logprobs: Mapping[str, Any] | None = None
    more_choices: tuple[Choice, ...] = ()  # choices 1.. when n > 1
    thinking: tuple[ThinkingPart, ...] = ()  # Anthropic's extended thinking, when asked for

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


# --- Streamed events -------------------------------------------------------------------------
# A provider's stream yields plain ``str`` text deltas (the common case, kept cheap), these
# events, and the whole ``CompletionResult`` last.


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int  # the tool call's place among this reply's tool calls, from 0
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # the next fragment of the arguments' JSON text


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """The next piece of a thinking block: its text, its signature, or a whole redacted
    block (``redacted``)."""

    text: str = ""
    signature: str = ""
    redacted: str = ""


@dataclass(frozen=True, slots=True)
class LogprobsDelta:
    content: tuple[Mapping[str, Any], ...]  # OpenAI's per-token logprob entries


StreamEvent = str | ToolCallStart | ToolCallDelta | ThinkingDelta | LogprobsDelta | CompletionResult


class UnsupportedFeature(ValueError):
    """A request field with no translation to the provider's format; ``param`` is the
    client's name for it. Raised by the pure translators, shown as a 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
