"""OpenAI Responses (``/v1/responses``) on Parley's own pieces: the views.

* ``store: true`` (the default): the response is an assistant message in a Parley
  conversation, written by a job (``llm.compat.responses_stored``). ``background: true``
  answers at once with the queued response; otherwise the request follows the job until it
  ends (``stream`` relays it as Responses events).
* ``store: false``: the reply is called through the gateway like a chat completion and
  nothing but its accounting record is kept.
* ``GET /v1/responses/{id}`` (``?stream=true&starting_after=N`` replays the events after
  sequence number N, then follows the live ones), ``POST .../cancel`` (background responses)
  and ``DELETE`` (the response's conversation, i.e. its whole chain), and
  ``GET .../input_items`` (what the response's call sent, as input items).

Requests are parsed by ``responses_request``; response objects and events are built by
``responses_events``. Events are numbered by their place in the reply's stream, so a resumed
stream continues exactly where the client left off."""

import redis
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from jobs.models import Job
from jobs.services import job_cancel
from llm.compat import openai_chat
from llm.compat.auth import caller_authenticate
from llm.compat.core import GatewayError, GatewayRequest, domain_refusal, invalid, parse_json_object
from llm.compat.gateway import call_complete, call_open, call_stream, record_after_response
from llm.compat.http import json_response, request_body, sse_response
from llm.compat.responses_events import EventWriter, ReplyOutput, response_events, unstored_shape
from llm.compat.responses_request import responses_request_parse
from llm.compat.responses_stored import (
    FINISHED,
    follow,
    input_items,
    owned_reply,
    reload_body,
    shape_of,
    stored_body,
    stored_create,
    wait_for,
)
from llm.models import Conversation, GatewayEndpoint, Message
from llm.services import conversation_delete
from project import errors as domain
from project.db import connection_give_back

error_response = openai_chat.error_response


def _is_stored(raw: bytes) -> bool:
    """``store`` is on unless the body says ``false`` (a body that does not parse is reported
    by the stored path, after authenticating)."""
    try:
        return parse_json_object(raw).get("store", True) is not False
    except GatewayError:
        return True


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    try:
        raw = request_body(request)
        if not _is_stored(raw):
            return await _unstored(request, raw)
        reply, shape = await sync_to_async(stored_create, thread_sensitive=False)(request, raw)
    except GatewayError as error:
        return error_response(error)
    message_id = str(reply.pk)
    if shape.background:
        return json_response(shape.body("queued"))
    if parse_json_object(raw).get("stream") is True:
        return sse_response(follow(message_id, EventWriter(shape), "queued"))
    try:
        await wait_for(message_id)
    except redis.RedisError:
        # The reply is stored, and reconcile delivers it once Redis is back: answer with the
        # response as it stands (``queued``, its id to GET later) rather than a 503 whose
        # retry would post the same turn a second time.
        pass
    finished = await sync_to_async(reload_body, thread_sensitive=False)(message_id, shape)
    return json_response(finished)


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


def _load(http_request: HttpRequest, response_id: str):
    try:
        user, _ = caller_authenticate(http_request)
        message = owned_reply(user, response_id)
        return message, shape_of(message)
    finally:
        connection_give_back()


def _cancel(http_request: HttpRequest, response_id: str) -> dict:
    try:
        user, _ = caller_authenticate(http_request)
        message = owned_reply(user, response_id)
        if message.status in FINISHED:
            raise invalid("Only a queued or in-progress response can be cancelled.")
        job = Job.objects.filter(pk=message.job_id).first()
        if job is not None:
            try:
                job_cancel(job=job)
            except domain.DomainError as exc:
                raise domain_refusal(exc) from None
        message.refresh_from_db()
        body = stored_body(message, shape_of(message, background=True))
        if body["status"] in ("queued", "in_progress"):  # the worker marks the reply shortly
            body["status"] = "cancelled"
        return body
    finally:
        connection_give_back()


def _delete(http_request: HttpRequest, response_id: str) -> dict:
    try:
        user, _ = caller_authenticate(http_request)
        message = owned_reply(user, response_id)
        conversation = Conversation.objects.get(pk=message.conversation_id)
        conversation_delete(conversation=conversation)
        return {"id": response_id, "object": "response.deleted", "deleted": True}
    finally:
        connection_give_back()


def _body(message: Message, shape) -> dict:
    try:
        return stored_body(message, shape)
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
            return sse_response(follow(str(message.pk), writer, message.status))
        return json_response(await sync_to_async(_body)(message, shape))
    except GatewayError as error:
        return error_response(error)


@csrf_exempt
async def response_cancel(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        return json_response(await sync_to_async(_cancel)(request, response_id))
    except GatewayError as error:
        return error_response(error)


def _input_items_page(http_request: HttpRequest, response_id: str) -> dict:
    """One page of a stored response's input items, in OpenAI's list shape (``limit`` 1-100,
    default 20; ``order`` desc (default) or asc; ``after`` an item id)."""
    query = http_request.GET
    order, limit = query.get("order", "desc"), query.get("limit", "20")
    try:
        user, _ = caller_authenticate(http_request)
        if order not in ("asc", "desc"):
            raise invalid("'order' must be asc or desc.", param="order")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise invalid("'limit' must be a number from 1 to 100.", param="limit")
        items = input_items(owned_reply(user, response_id))
    finally:
        connection_give_back()
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise invalid(f"No input item with id '{after[:80]}' in this response.", "after")
        items = items[ids.index(after) + 1 :]
    page = items[: int(limit)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > len(page),
    }


@csrf_exempt
async def response_input_items(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        return json_response(await sync_to_async(_input_items_page)(request, response_id))
    except GatewayError as error:
        return error_response(error)
