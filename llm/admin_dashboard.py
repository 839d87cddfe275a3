"""The staff dashboard at /admin/dashboard/: spend, jobs, latency, top spenders and queue
depth, in a fixed number of queries whatever the data size. Charts are inline SVG computed
here, so the page needs no JavaScript and no CDN."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib import admin
from django.db.models import Count, DecimalField, F, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.quotas import month_start
from jobs.models import Job, JobStatus
from llm.models import Message, MessageRole, MessageStatus, Usage

LATENCY_SAMPLE_LIMIT = 50_000
CHART_WIDTH, CHART_HEIGHT = 720, 180


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    tokens: int
    cost: Decimal


def dashboard_daily_usage(*, days: int, today: date) -> list[DayUsage]:
    """Tokens and cost for each of the last ``days`` UTC days, zero for days without usage."""
    first = today - timedelta(days=days - 1)
    rows = (
        Usage.objects.filter(created_at__date__gte=first, created_at__date__lte=today)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(
            tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
            cost=Coalesce(
                Sum("cost"), Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=6)
            ),
        )
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {"tokens": 0, "cost": Decimal(0)})
        result.append(
            DayUsage(day, int(row["tokens"]), Decimal(row["cost"]).quantize(Decimal("0.000001")))
        )
    return result


def dashboard_job_counts(*, since: datetime) -> list[dict]:
    """Jobs per status, over all time and since ``since`` (one query)."""
    totals = Job.objects.aggregate(
        **{f"all_{s}": Count("pk", filter=Q(status=s)) for s in JobStatus.values},
        **{
            f"recent_{s}": Count("pk", filter=Q(status=s, created_at__gte=since))
            for s in JobStatus.values
        },
    )
    return [
        {"status": s, "all": totals[f"all_{s}"], "recent": totals[f"recent_{s}"]}
        for s in JobStatus.values
    ]


def _nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
    return ordered[int(rank) - 1]


def dashboard_latency_by_model(*, since: datetime) -> list[dict]:
    """p50/p95 latency (nearest rank) per model of completed replies since ``since``, from
    the newest LATENCY_SAMPLE_LIMIT replies (bounded memory, one query, any database)."""
    rows = (
        Message.objects.filter(
            role=MessageRole.ASSISTANT,
            status=MessageStatus.COMPLETED,
            completed_at__gte=since,
            latency_ms__isnull=False,
        )
        .order_by("-completed_at")
        .values_list("model__slug", "latency_ms")[:LATENCY_SAMPLE_LIMIT]
    )
    samples: dict[str, list[int]] = {}
    for slug, latency in rows:
        samples.setdefault(slug or "?", []).append(latency)
    return [
        {
            "model": slug,
            "count": len(values),
            "p50": _nearest_rank(values, 0.5),
            "p95": _nearest_rank(values, 0.95),
        }
        for slug, values in sorted(samples.items())
    ]


def dashboard_top_spenders(*, since: datetime, limit: int = 10) -> list[dict]:
    return list(
        Usage.objects.filter(created_at__gte=since)
        .values(email=F("user__email"))
        .annotate(
            tokens=Sum(F("input_tokens") + F("output_tokens")),
            cost=Sum("cost"),
            requests=Count("pk"),
        )
        .order_by("-cost", "email")[:limit]
    )


def dashboard_queue_depth(*, now: datetime) -> list[dict]:
    rows = (
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.IN_PROGRESS])
        .values("queue")
        .annotate(
            queued=Count("pk", filter=Q(status=JobStatus.QUEUED)),
            running=Count("pk", filter=Q(status=JobStatus.IN_PROGRESS)),
            oldest=Min("created_at", filter=Q(status=JobStatus.QUEUED)),
        )
        .order_by("queue")
    )
    return [
        {
            **row,
            "oldest_age_s": round((now - row["oldest"]).total_seconds()) if row["oldest"] else None,
        }
        for row in rows
    ]


def usage_chart(days: list[DayUsage]) -> dict:
    """Bar heights for tokens and a polyline for cost, scaled to the chart box."""
    max_tokens = max((d.tokens for d in days), default=0) or 1
    max_cost = max((d.cost for d in days), default=Decimal(0)) or Decimal(1)
    slot = CHART_WIDTH / max(len(days), 1)
    bars, points = [], []
    for index, day in enumerate(days):
        height = CHART_HEIGHT * day.tokens / max_tokens
        x = index * slot
        bars.append(
            {
                "x": round(x + slot * 0.1, 1),
                "y": round(CHART_HEIGHT - height, 1),
                "width": round(slot * 0.8, 1),
                "height": round(height, 1),
                "title": f"{day.day}: {day.tokens} tokens, ${day.cost:.2f}",
            }
        )
        cost_y = CHART_HEIGHT - float(CHART_HEIGHT * day.cost / max_cost)
        points.append(f"{x + slot / 2:.1f},{cost_y:.1f}")
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "cost_points": " ".join(points),
        "max_tokens": max_tokens if any(d.tokens for d in days) else 0,
        "max_cost": max_cost if any(d.cost for d in days) else Decimal(0),
        "first_day": days[0].day if days else None,
        "last_day": days[-1].day if days else None,
        "total_tokens": sum(d.tokens for d in days),
        "total_cost": sum((d.cost for d in days), Decimal(0)),
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Staff only (wrapped in admin_view in project/urls.py)."""
    now = timezone.now()
    days = dashboard_daily_usage(days=30, today=now.date())
    context = {
        **admin.site.each_context(request),
        "title": "Parley dashboard",
        "chart": usage_chart(days),
        "jobs": dashboard_job_counts(since=now - timedelta(hours=24)),
        "latency": dashboard_latency_by_model(since=now - timedelta(days=7)),
        "latency_limit": LATENCY_SAMPLE_LIMIT,
        "spenders": dashboard_top_spenders(since=month_start(now)),
        "queues": dashboard_queue_depth(now=now),
    }
    return render(request, "admin/parley_dashboard.html", context)
