"""A conversation as a file: JSON (the current branch, or the whole tree) or Markdown (the
current branch). One renderer for the API's export endpoint and the admin's export links."""

import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.text import slugify

from llm.models import Conversation, Message, MessageRole, MessageStatus
from llm.selectors import message_branch, message_list_all
from project.errors import InvalidInput
from project.money import usd

EXPORT_FORMATS = {"json": ("application/json", "json"), "markdown": ("text/markdown", "md")}


@dataclass(frozen=True, slots=True)
class ExportFile:
    filename: str
    content_type: str
    body: str


def _message_fields(message: Message) -> dict:
    return {
        "id": message.pk,
        "parent": message.parent_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model.slug if message.model_id else None,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cost": usd(message.cost_micros) if message.cost_micros is not None else None,
        "created_at": message.created_at,
    }


def conversation_export_data(*, conversation: Conversation, whole_tree: bool = False) -> dict:
    """What an export holds: the conversation's settings and its current branch (root first),
    or with ``whole_tree`` every message of every branch in the order written."""
    if whole_tree:
        messages = message_list_all(conversation=conversation)
    else:
        messages = message_branch(conversation=conversation)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model.slug,
        "system_prompt": conversation.system_prompt,
        "params": {
            "temperature": float(conversation.temperature)
            if conversation.temperature is not None
            else None,
            "max_tokens": conversation.max_tokens,
        },
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "exported_at": timezone.now(),
        "current_leaf": conversation.current_leaf_id,
        "branch": "all" if whole_tree else "current",
        "messages": [_message_fields(message) for message in messages],
    }


def _markdown(data: dict) -> str:
    lines = [f"# {data['title'] or 'Conversation ' + str(data['id'])}", ""]
    lines += [f"- Model: {data['model']}", f"- Started: {data['created_at']:%Y-%m-%d %H:%M} UTC"]
    lines += [f"- Exported: {data['exported_at']:%Y-%m-%d %H:%M} UTC", ""]
    if data["system_prompt"]:
        lines += ["## System prompt", "", data["system_prompt"], ""]
    for message in data["messages"]:
        if message["role"] == MessageRole.USER:
            heading = "## User"
        else:
            notes = [message["model"]] if message["model"] else []
            if message["status"] != MessageStatus.COMPLETED:
                notes.append(message["status"])
            heading = "## Assistant" + (f" ({', '.join(notes)})" if notes else "")
        lines += [heading, "", message["content"], ""]
    return "\n".join(lines)


def conversation_export(
    *, conversation: Conversation, export_format: str, whole_tree: bool = False
) -> ExportFile:
    """The conversation as a file in ``export_format`` (``json`` or ``markdown``); the whole
    tree is offered in JSON only (``InvalidInput`` otherwise)."""
    if export_format not in EXPORT_FORMATS:
        raise InvalidInput(
            f"Unknown export format '{export_format}'; use json or markdown.",
            code="invalid_format",
            details={"format": ["One of: json, markdown."]},
        )
    if whole_tree and export_format != "json":
        raise InvalidInput(
            "The whole tree is exported as JSON only.",
            code="invalid_format",
            details={"all": ["Only with format=json."]},
        )
    data = conversation_export_data(conversation=conversation, whole_tree=whole_tree)
    content_type, extension = EXPORT_FORMATS[export_format]
    if export_format == "json":
        body = json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
    else:
        body = _markdown(data)
    name = slugify(conversation.title)[:60] or "conversation"
    filename = f"{name}-{str(conversation.pk)[:8]}.{extension}"
    return ExportFile(filename, f"{content_type}; charset=utf-8", body)
