"""OpenAPI for what drf-spectacular cannot see: the Server-Sent Events stream (a plain async
Django view, not a DRF one)."""

from llm.api import stream

STREAM_PATH = "/api/v1/conversations/{conversation_pk}/messages/{message_pk}/stream/"


# OpenAPI 3.0 has no way to describe a stream as a whole, so ``schema`` describes one event as
# an EventSource sees it (the convention OpenAPI 3.2 writes as ``itemSchema``); ``data`` is JSON.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["delta", "reset", "done", "error"]},
        "data": {
            "type": "string",
            "description": 'JSON: delta `{"text"}`, reset `{"attempt"}`, done `{"message"}`, '
            'error `{"code", "message"}`.',
        },
        "id": {
            "type": "string",
            "pattern": r"^[0-9]+-[0-9]+$",
            "description": "Send it back as Last-Event-ID to resume after this event.",
        },
    },
}


def _uuid_parameter(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "format": "uuid"},
    }


def add_stream_endpoint(result: dict, generator, request, public) -> dict:
    """Postprocessing hook documenting GET .../messages/{id}/stream/."""
    result.setdefault("paths", {})[STREAM_PATH] = {
        "get": {
            "operationId": "conversations_messages_stream",
            "summary": "Follow a reply live as Server-Sent Events",
            "description": stream.__doc__.split("\n", 2)[2].strip(),
            "tags": ["messages"],
            "parameters": [
                _uuid_parameter("conversation_pk", "The conversation."),
                _uuid_parameter("message_pk", "The assistant message."),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this event id (sent automatically by EventSource).",
                    "schema": {"type": "string"},
                },
                {
                    "name": "last_event_id",
                    "in": "query",
                    "required": False,
                    "description": "Same as the Last-Event-ID header, for clients that cannot set headers.",
                    "schema": {"type": "string"},
                },
            ],
            "security": [{"jwtAuth": []}, {"apiKeyAuth": []}],
            "responses": {
                "200": {
                    "description": "An event stream: `delta`, `reset`, then `done` or `error`.",
                    "content": {
                        "text/event-stream": {
                            "schema": SSE_EVENT_SCHEMA,
                            "example": 'id: 1700000000000-0\nevent: delta\ndata: {"text":"Hel"}\n\n',
                        }
                    },
                }
            },
        }
    }
    return result
