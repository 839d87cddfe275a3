"""Teams: a level above the user. A team has members (member or team admin), its own budgets,
rate limits and model access (kept in budgets and llm, keyed on the team), and API keys that
charge it: team service keys, owned by the team's service account rather than a person, and
members' personal keys scoped to it."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Team(models.Model):
    name = models.CharField(max_length=150)
    slug = models.SlugField(
        max_length=64, unique=True, help_text="Names the team in the X-Parley-Team header."
    )
    # Team service keys are owned by this account, not by the person who made them, so they
    # outlive that person's membership. It has no password and belongs to no team.
    service_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="service_team",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class TeamRole(models.TextChoices):
    MEMBER = "member", "Member"
    ADMIN = "admin", "Team admin"


class Membership(models.Model):
    """A user in a team. ``is_default``: the team a JWT request (or a personal key scoped to no
    team) is charged to when it names none; at most one per user."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=TeamRole.choices, default=TeamRole.MEMBER)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="teams_membership_once"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default=True), name="teams_membership_one_default"
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in TeamRole]),
                name="teams_membership_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class TeamApiKey(models.Model):
    """An API key whose calls are charged to ``team``: a service key (owned by the team's
    service account) or a member's personal key scoped to the team. A key without this row is
    a personal key that charges like a JWT (the X-Parley-Team header, else the default team)."""

    api_key = models.OneToOneField(
        "accounts.ApiKey", on_delete=models.CASCADE, primary_key=True, related_name="team_scope"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who made it; a service key stays with the team when they leave.",
    )

    class Meta:
        verbose_name = "team API key"

    def __str__(self) -> str:
        return f"key {self.api_key_id} of {self.team_id}"
