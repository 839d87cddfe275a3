"""Reads for model access: which catalog models a user, or a request made with one of their
API keys, or charged to a team, may use. Staff restrict each in the admin (``ModelAccess``); no
restriction means every usable model. A request must pass its user's restriction, its key's
and its team's."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from accounts.models import ApiKey, User
from llm.models import LLMModel, ModelAccess
from project.errors import NotAllowed
from project.hotcache import HotCache
from teams.models import Team


@dataclass(frozen=True, slots=True)
class ModelRestrictions:
    """Allowed model ids per restricting subject; None means that subject is unrestricted."""

    user: frozenset[int] | None = None
    api_key: frozenset[int] | None = None
    team: frozenset[int] | None = None

    def refused_by(self, model: LLMModel) -> str | None:
        """``"user"``, ``"api_key"`` or ``"team"`` when that restriction excludes ``model``,
        else None."""
        for subject in ("user", "api_key", "team"):
            allowed = getattr(self, subject)
            if allowed is not None and model.pk not in allowed:
                return subject
        return None


# Per process; any change to a restriction invalidates it in every process (llm.apps).
ACCESS = "access"
_restrictions: HotCache[ModelRestrictions] = HotCache(ACCESS)


def model_restrictions(
    *, user: User, api_key: ApiKey | None = None, team: Team | None = None
) -> ModelRestrictions:
    """The user's, the key's and the team's restrictions: one query, or none while cached
    (immutable)."""
    key = (
        user.pk,
        api_key.pk if api_key is not None else None,
        team.pk if team is not None else None,
    )
    return _restrictions.get(key, lambda: _restrictions_load(user=user, api_key=api_key, team=team))


def _restrictions_load(
    *, user: User, api_key: ApiKey | None, team: Team | None
) -> ModelRestrictions:
    subject = Q(user_id=user.pk)
    if api_key is not None:
        subject |= Q(api_key_id=api_key.pk)
    if team is not None:
        subject |= Q(team_id=team.pk)
    sets: dict[str, set[int]] = {}
    rows = ModelAccess.objects.filter(subject).values_list(
        "api_key_id", "team_id", "allowed_models"
    )
    for api_key_id, team_id, model_id in rows:
        allowed = sets.setdefault("api_key" if api_key_id else "team" if team_id else "user", set())
        if model_id is not None:  # a restriction with no models allows none
            allowed.add(model_id)
    return ModelRestrictions(**{subject: frozenset(allowed) for subject, allowed in sets.items()})


def model_allowed(
    *, model: LLMModel, user: User, api_key: ApiKey | None = None, team: Team | None = None
) -> bool:
    return model_restrictions(user=user, api_key=api_key, team=team).refused_by(model) is None


def model_access_check(
    *,
    model: LLMModel,
    user: User,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    restrictions: ModelRestrictions | None = None,
) -> None:
    """Raise ``NotAllowed`` (403 ``model_not_allowed``) saying whose restriction excludes
    ``model``."""
    restrictions = restrictions or model_restrictions(user=user, api_key=api_key, team=team)
    refused_by = restrictions.refused_by(model)
    if refused_by is None:
        return
    whose = {"api_key": "This API key is", "team": "Your team is", "user": "Your account is"}[
        refused_by
    ]
    raise NotAllowed(
        f"{whose} not allowed to use model '{model.slug}'. GET /api/v1/models/ lists the models "
        "you may use; ask staff for access.",
        code="model_not_allowed",
        details={"model": model.slug, "restricted_by": refused_by},
    )


def models_allowed(
    models: Iterable[LLMModel],
    *,
    user: User,
    api_key: ApiKey | None = None,
    team: Team | None = None,
) -> list[LLMModel]:
    """``models`` without those the user's, the key's or the team's restriction excludes."""
    restrictions = model_restrictions(user=user, api_key=api_key, team=team)
    return [model for model in models if restrictions.refused_by(model) is None]
