"""The canonical call model as JSON, for what a stored turn keeps: a message's parts (images,
tool calls, tool results, thinking) in ``Message.parts``, and the options a reply was asked
with (tools, tool choice, structured output, sampling) in ``Message.call_options``, so the
worker that writes the reply later sends the provider what the client sent.

Pure functions; ``*_load`` reads what ``*_dump`` wrote (and ignores keys it does not know, so
rows written by a newer version still load)."""

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

from llm.providers.canonical import (
    ImagePart,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCall,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)

PART_TYPES: dict[str, type] = {
    "text": TextPart,
    "image": ImagePart,
    "tool_call": ToolCallPart,
    "tool_result": ToolResultPart,
    "thinking": ThinkingPart,
}
_TYPE_OF = {cls: name for name, cls in PART_TYPES.items()}
# The ChatRequest fields a stored reply keeps beside its conversation's parameters.
OPTION_NAMES = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "top_p",
)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def parts_dump(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """Parts as JSON objects, each tagged with its ``type``."""
    dumped = []
    for part in parts:
        data = asdict(part)
        if isinstance(part, ToolResultPart):
            data["images"] = [asdict(image) for image in part.images]
        dumped.append({"type": _TYPE_OF[type(part)], **data})
    return dumped


def parts_load(data: Iterable[Mapping[str, Any]] | None) -> tuple[Part, ...]:
    parts: list[Part] = []
    for item in data or ():
        cls = PART_TYPES.get(item.get("type", ""))
        if cls is None:
            continue
        values = _known(cls, item)
        if cls is ToolResultPart:
            values["images"] = tuple(ImagePart(**_known(ImagePart, i)) for i in item["images"])
        parts.append(cls(**values))
    return tuple(parts)


def reply_parts(text: str, tool_calls: Iterable[ToolCall]) -> list[dict[str, Any]]:
    """What a reply with tool calls stores as its parts (its text first, as providers send
    it); nothing for a reply of text alone, whose ``content`` is all of it."""
    calls = [ToolCallPart(id=c.id, name=c.name, arguments=c.arguments) for c in tool_calls]
    if not calls:
        return []
    return parts_dump([*([TextPart(text)] if text else []), *calls])


def tool_calls_of(parts: Iterable[Part]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(id=p.id, name=p.name, arguments=p.arguments)
        for p in parts
        if isinstance(p, ToolCallPart)
    )


def options_dump(options: Mapping[str, Any]) -> dict[str, Any]:
    """The stored options of a reply, from ChatRequest keyword arguments (others ignored)."""
    dumped: dict[str, Any] = {}
    for name in OPTION_NAMES:
        value = options.get(name)
        if value is None or value == ():
            continue
        if name == "tools":
            value = [{**asdict(tool), "parameters": dict(tool.parameters)} for tool in value]
        elif name in ("tool_choice", "response_format"):
            value = asdict(value)
        dumped[name] = value
    return dumped


def options_load(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """ChatRequest keyword arguments from ``options_dump``'s JSON."""
    data = data or {}
    options: dict[str, Any] = {}
    for name in OPTION_NAMES:
        value = data.get(name)
        if value is None:
            continue
        if name == "tools":
            value = tuple(Tool(**_known(Tool, tool)) for tool in value)
        elif name == "tool_choice":
            value = ToolChoice(**_known(ToolChoice, value))
        elif name == "response_format":
            value = ResponseFormat(**_known(ResponseFormat, value))
        options[name] = value
    return options
