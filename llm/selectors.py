"""Reads for the llm app: the catalog, conversations, messages and usage."""

from django.db.models import QuerySet

from llm.catalog import provider_target, unavailable_reason
from llm.models import LLMModel
from project.api.exceptions import ApiError


def model_list_available() -> list[LLMModel]:
    """Enabled models that can be called right now (their provider has a key or a stand-in)."""
    return [model for model in LLMModel.objects.filter(enabled=True) if provider_target(model)]


def model_find_available(*, slug: str) -> LLMModel | None:
    model = LLMModel.objects.filter(slug=slug, enabled=True).first()
    return model if model is not None and provider_target(model) else None


def model_get_available(*, slug: str) -> LLMModel:
    """The model clients asked for, or a 400 that says why it cannot be used."""
    model = LLMModel.objects.filter(slug=slug).first()
    if model is None:
        raise ApiError(
            f"Unknown model '{slug}'. GET /api/v1/models/ lists the models you can use.",
            code="model_unknown",
            details={"model": [f"Unknown model '{slug}'."]},
        )
    if not model.enabled or provider_target(model) is None:
        reason = unavailable_reason(model)
        raise ApiError(reason, code="model_unavailable", details={"model": [reason]})
    return model


def model_catalog() -> QuerySet[LLMModel]:
    return LLMModel.objects.all()
