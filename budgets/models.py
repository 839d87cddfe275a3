"""Spend controls: budgets (USD and/or tokens per period, on a user, an API key, a team or a
member within a team), their
per-period ledger rows, the reservations held against them, and per-minute rate limits."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from budgets.periods import BudgetPeriod
from project.money import usd


def _one_subject(prefix: str) -> models.CheckConstraint:
    """Exactly one of user, API key, team."""
    return models.CheckConstraint(
        condition=(Q(user__isnull=False) & Q(api_key__isnull=True) & Q(team__isnull=True))
        | (Q(user__isnull=True) & Q(api_key__isnull=False) & Q(team__isnull=True))
        | (Q(user__isnull=True) & Q(api_key__isnull=True) & Q(team__isnull=False)),
        name=f"{prefix}_one_subject",
    )


class Budget(models.Model):
    """A cap on spend for a user, one API key, a team, or one member within a team (user and
    team both set: the member's calls charged to that team). A call counts toward its user's,
    its key's, its team's and its member-in-team budgets. Edit limits freely: the ledger keeps
    what was spent."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
    )
    team = models.ForeignKey(
        "teams.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="budgets"
    )
    period = models.CharField(max_length=16, choices=BudgetPeriod.choices)
    limit_micros = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Micro-dollars (USD 1e-6) per period. Empty: no money cap.",
    )
    limit_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input + output tokens per period. Empty: no token cap."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(api_key__isnull=True))
                | (Q(user__isnull=True) & Q(api_key__isnull=False) & Q(team__isnull=True))
                | (Q(user__isnull=True) & Q(api_key__isnull=True) & Q(team__isnull=False)),
                name="budgets_budget_one_subject",
            ),
            models.CheckConstraint(
                condition=Q(limit_micros__isnull=False) | Q(limit_tokens__isnull=False),
                name="budgets_budget_has_a_limit",
            ),
            models.CheckConstraint(
                condition=Q(limit_micros__isnull=True) | Q(limit_micros__gte=0),
                name="budgets_budget_limit_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(period__in=[p.value for p in BudgetPeriod]),
                name="budgets_budget_period_valid",
            ),
            models.UniqueConstraint(
                fields=["user", "period"],
                condition=Q(user__isnull=False, team__isnull=True),
                name="budgets_budget_one_per_user_period",
            ),
            models.UniqueConstraint(
                fields=["team", "period"],
                condition=Q(team__isnull=False, user__isnull=True),
                name="budgets_budget_one_per_team_period",
            ),
            models.UniqueConstraint(
                fields=["team", "user", "period"],
                condition=Q(team__isnull=False, user__isnull=False),
                name="budgets_budget_one_per_member_period",
            ),
            models.UniqueConstraint(
                fields=["api_key", "period"],
                condition=Q(api_key__isnull=False),
                name="budgets_budget_one_per_key_period",
            ),
        ]

    def __str__(self) -> str:
        limits = []
        if self.limit_micros is not None:
            limits.append(f"${usd(self.limit_micros)}")
        if self.limit_tokens is not None:
            limits.append(f"{self.limit_tokens} tokens")
        subject = {
            "api_key": f"key {self.api_key_id}",
            "team": f"team {self.team_id}",
            "team_member": f"user {self.user_id} in team {self.team_id}",
            "user": f"user {self.user_id}",
        }[self.scope]
        return f"{subject}: {' / '.join(limits)} {self.get_period_display().split(' (')[0].lower()}"

    @property
    def scope(self) -> str:
        """``user``, ``api_key``, ``team`` or ``team_member``."""
        if self.api_key_id:
            return "api_key"
        if self.team_id:
            return "team_member" if self.user_id else "team"
        return "user"


class BudgetLedger(models.Model):
    """Spent and reserved amounts of one budget in one period (one row per period, created
    when the period's first reservation arrives). Reservations are taken by a conditional
    UPDATE on this row, so spent + reserved never passes the limit."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="ledgers")
    period_start = models.DateTimeField()
    # Micro-dollars: integers, so sums are exact on SQLite too (project.money).
    spent_micros = models.BigIntegerField(default=0)
    reserved_micros = models.BigIntegerField(default=0)
    spent_tokens = models.BigIntegerField(default=0)
    reserved_tokens = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["budget", "-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start"], name="budgets_ledger_one_per_period"
            ),
            models.CheckConstraint(
                condition=Q(spent_micros__gte=0)
                & Q(reserved_micros__gte=0)
                & Q(spent_tokens__gte=0)
                & Q(reserved_tokens__gte=0),
                name="budgets_ledger_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget} from {self.period_start:%Y-%m-%d}"


class ReservationStatus(models.TextChoices):
    HELD = "held", "Held"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class Reservation(models.Model):
    """A request's worst-case cost, held against every budget that applied when it was
    admitted, until it is settled to the actual cost (or released: actual cost zero)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey(
        "teams.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reference = models.CharField(
        max_length=100,
        blank=True,
        db_index=True,
        help_text="What the reservation pays for, e.g. job:<uuid> (used by reconcile).",
    )
    model = models.CharField(max_length=64, blank=True, help_text="Catalog slug, for display.")
    amount_micros = models.BigIntegerField()
    amount_tokens = models.BigIntegerField()
    actual_micros = models.BigIntegerField(null=True, blank=True)
    actual_tokens = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="budgets_resv_status_created")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ReservationStatus]),
                name="budgets_reservation_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(amount_micros__gte=0) & Q(amount_tokens__gte=0),
                name="budgets_reservation_amount_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(status="held")
                | (Q(actual_micros__isnull=False) & Q(settled_at__gte=F("created_at"))),
                name="budgets_reservation_settled_has_actual",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference or self.pk}: ${usd(self.amount_micros)} {self.status}"


class ReservationHold(models.Model):
    """One budget period (a ledger row: budget + period start) a reservation holds money and
    tokens in, so settling finds the same rows even after the period rolled over."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="holds")
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "budget"], name="budgets_hold_once_per_budget"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reservation_id} on budget {self.budget_id} from {self.period_start:%Y-%m-%d}"


class RateLimit(models.Model):
    """Requests and tokens per minute for one user, one API key or one team (all its calls
    together), counted in Redis over a sliding minute shared by every process. Empty means the
    setting's default applies (a team has no default)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="rate_limit",
    )
    api_key = models.OneToOneField(
        "accounts.ApiKey",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="rate_limit",
    )
    team = models.OneToOneField(
        "teams.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="rate_limit"
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [_one_subject("budgets_ratelimit")]

    def __str__(self) -> str:
        if self.team_id:
            subject = f"team {self.team_id}"
        else:
            subject = f"key {self.api_key_id}" if self.api_key_id else f"user {self.user_id}"
        return (
            f"{subject}: {self.requests_per_minute or '-'} rpm, {self.tokens_per_minute or '-'} tpm"
        )
