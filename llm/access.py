"""Reads for model access: which catalog models a user, or a request made with one of their
API keys, may use. Staff restrict either in the admin (``ModelAccess``); no restriction means
every usable model. A key's request must pass the key's restriction and its owner's."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from accounts.models import ApiKey, User
from llm.models import LLMModel, ModelAccess
from project.errors import NotAllowed
from project.hotcache import HotCache


@dataclass(frozen=True, slots=True)
class ModelRestrictions:
    """Allowed model ids per restricting subject; None means that subject is unrestricted."""

    user: frozenset[int] | None = None
    api_key: frozenset[int] | None = None

    def refused_by(self, model: LLMModel) -> str | None:
        """``"user"`` or ``"api_key"`` when that restriction excludes ``model``, else None."""
        if self.user is not None and model.pk not in self.user:
            return "user"
        if self.api_key is not None and model.pk not in self.api_key:
            return "api_key"
        return None


# Per process; any change to a restriction invalidates it in every process (llm.apps).
ACCESS = "access"
_restrictions: HotCache[ModelRestrictions] = HotCache(ACCESS)


def model_restrictions(*, user: User, api_key: ApiKey | None = None) -> ModelRestrictions:
    """The user's and the key's restrictions: one query, or none while cached (immutable)."""
    key = (user.pk, api_key.pk if api_key is not None else None)
    return _restrictions.get(key, lambda: _restrictions_load(user=user, api_key=api_key))


def _restrictions_load(*, user: User, api_key: ApiKey | None) -> ModelRestrictions:
    subject = Q(user_id=user.pk)
    if api_key is not None:
        subject |= Q(api_key_id=api_key.pk)
    sets: dict[str, set[int]] = {}
    rows = ModelAccess.objects.filter(subject).values_list("api_key_id", "allowed_models")
    for api_key_id, model_id in rows:
        allowed = sets.setdefault("api_key" if api_key_id else "user", set())
        if model_id is not None:  # a restriction with no models allows none
            allowed.add(model_id)
    return ModelRestrictions(
        user=frozenset(sets["user"]) if "user" in sets else None,
        api_key=frozenset(sets["api_key"]) if "api_key" in sets else None,
    )


def model_allowed(*, model: LLMModel, user: User, api_key: ApiKey | None = None) -> bool:
    return model_restrictions(user=user, api_key=api_key).refused_by(model) is None


def model_access_check(
    *,
    model: LLMModel,
    user: User,
    api_key: ApiKey | None = None,
    restrictions: ModelRestrictions | None = None,
) -> None:
    """Raise ``NotAllowed`` (403 ``model_not_allowed``) saying whose restriction excludes
    ``model``."""
    restrictions = restrictions or model_restrictions(user=user, api_key=api_key)
    refused_by = restrictions.refused_by(model)
    if refused_by is None:
        return
    whose = "This API key is" if refused_by == "api_key" else "Your account is"
    raise NotAllowed(
        f"{whose} not allowed to use model '{model.slug}'. GET /api/v1/models/ lists the models "
        "you may use; ask staff for access.",
        code="model_not_allowed",
        details={"model": model.slug, "restricted_by": refused_by},
    )


def models_allowed(
    models: Iterable[LLMModel], *, user: User, api_key: ApiKey | None = None
) -> list[LLMModel]:
    """``models`` without those the user's or the key's restriction excludes."""
    restrictions = model_restrictions(user=user, api_key=api_key)
    return [model for model in models if restrictions.refused_by(model) is None]
