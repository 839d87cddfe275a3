"""``GET /v1/models`` and ``GET /v1/models/{id}``: the catalog models the caller may use, in
OpenAI's shape, or in Anthropic's when the request carries ``anthropic-version`` (the
Anthropic SDK's ``models.list``)."""

from django.http import HttpRequest, HttpResponse

from llm.access import models_allowed
from llm.compat.auth import caller_authenticate
from llm.compat.core import GatewayError
from llm.compat.edge import error_response
from llm.compat.http import json_response
from llm.models import LLMModel
from llm.selectors import model_list_available
from project.api.errors import status_for
from project.errors import DomainError
from teams.selectors import TEAM_HEADER, team_for_call


def _openai_model(model: LLMModel) -> dict:
    return {
        "id": model.slug,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.provider,
    }


def _anthropic_model(model: LLMModel) -> dict:
    return {
        "type": "model",
        "id": model.slug,
        "display_name": model.display_name,
        "created_at": model.created_at.isoformat().replace("+00:00", "Z"),
    }


def _available(request: HttpRequest) -> list[LLMModel]:
    """Callable models the caller (and the key they used) may use."""
    user, api_key = caller_authenticate(request, x_api_key=True)
    try:
        team = team_for_call(user=user, api_key=api_key, requested=request.headers.get(TEAM_HEADER))
    except DomainError as exc:
        kind = "not_found" if status_for(exc) == 404 else "permission"
        raise GatewayError(status_for(exc), kind, exc.message, code=exc.code) from None
    return models_allowed(model_list_available(), user=user, api_key=api_key, team=team)


def model_list(request: HttpRequest) -> HttpResponse:
    try:
        models = _available(request)
    except GatewayError as error:
        return error_response(request, error)
    if request.headers.get("anthropic-version"):
        data = [_anthropic_model(m) for m in models]
        return json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return json_response({"object": "list", "data": [_openai_model(m) for m in models]})


def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    try:
        model = next((m for m in _available(request) if m.slug == model_id), None)
        if model is None:
            raise GatewayError(
                404,
                "not_found",
                f"The model '{model_id}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
    except GatewayError as error:
        return error_response(request, error)
    if request.headers.get("anthropic-version"):
        return json_response(_anthropic_model(model))
    return json_response(_openai_model(model))
