"""OpenAI Responses requests (``POST /v1/responses``) in neutral terms: ``input`` items as
canonical turns, function tools, ``text.format``, ``include``, ``reasoning``; and what a
response object echoes back of them. Pure functions: a body in, a ``ResponsesRequest`` or a
400 naming the parameter out."""

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from llm.compat.core import (
    OPENAI,
    GatewayRequest,
    image_from_url,
    integer,
    invalid,
    number,
    openai_response_format,
    openai_tool_choice,
    positive_int,
    tool_of_function,
)
from llm.models import GatewayEndpoint
from llm.providers import ChatMessage
from llm.providers.canonical import (
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)

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


@dataclass(slots=True)
class ResponsesRequest:
    call: GatewayRequest
    store: bool
    background: bool
    previous_response_id: str | None
    instructions: str
    parallel_tool_calls: bool = True


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


def _tools(body: dict) -> tuple[Tool, ...]:
    raw = body.get("tools")
    if raw is None:
        return ()
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
    return tuple(tools)


def _text_format(body: dict) -> ResponseFormat | None:
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("'text' must be an object.", param="text")
    if text.get("verbosity") not in (None, "medium"):
        raise invalid(
            "Only the default verbosity (medium) is supported.",
            param="text.verbosity",
            code="unsupported_parameter",
        )
    return openai_response_format(text.get("format"), "text.format")


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
    tools = _tools(body)
    response_format = _text_format(body)
    parallel = _bool(body, "parallel_tool_calls", True)
    logprobs = _include(body)
    store = _bool(body, "store", True)
    if logprobs and store:
        raise invalid(
            "Log probabilities are not kept with a stored response: ask for them with "
            "'store': false.",
            param="include",
            code="unsupported_parameter",
        )
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
    parsed = ResponsesRequest(
        call=request,
        store=store,
        background=_bool(body, "background", False),
        previous_response_id=previous,
        instructions=request.system,
        parallel_tool_calls=parallel,
    )
    if parsed.background and not parsed.store:
        raise invalid("Background responses must be stored ('store': true).", param="store")
    if previous and not parsed.store:
        raise invalid("'previous_response_id' continues a stored response.", param="store")
    return parsed


# --- What a response object echoes back --------------------------------------------------


def tools_echo(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description or None,
            "parameters": dict(tool.parameters),
            "strict": tool.strict if tool.strict is not None else True,
        }
        for tool in tools
    ]


def tool_choice_echo(choice: ToolChoice | None) -> str | dict[str, str]:
    if choice is None:
        return "auto"
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def text_format_echo(response_format: ResponseFormat | None) -> dict[str, Any]:
    if response_format is None:
        return {"type": "text"}
    if response_format.type == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "name": response_format.name,
        "description": response_format.description or None,
        "schema": dict(response_format.schema or {}),
        "strict": response_format.strict,
    }
