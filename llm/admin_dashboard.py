"""The staff dashboard at /admin/dashboard/ (an admin page, mounted by project/urls.py with a
string include): spend, jobs, latency, top spenders and queue depth, in a fixed number of
queries whatever the data size (the figures come from the selectors). Charts are inline SVG
computed here, so the page needs no JavaScript and no CDN."""

from datetime import UTC, timedelta
from decimal import Decimal

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from budgets.periods import month_start
from budgets.selectors import budgets_most_used
from jobs.selectors import job_counts_by_status, queue_depths
from llm.selectors import (
    LATENCY_SAMPLE_LIMIT,
    DayUsage,
    reply_latency_by_model,
    usage_by_day,
    usage_by_team,
    usage_top_spenders,
)
from project.money import usd

CHART_WIDTH, CHART_HEIGHT = 720, 180


def usage_chart(days: list[DayUsage]) -> dict:
    """Bar heights for tokens and a polyline for cost, scaled to the chart box."""
    max_tokens = max((d.tokens for d in days), default=0) or 1
    max_cost = max((d.cost_micros for d in days), default=0) or 1
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
                "title": f"{day.day}: {day.tokens} tokens, ${usd(day.cost_micros):.2f}",
            }
        )
        cost_y = CHART_HEIGHT - CHART_HEIGHT * day.cost_micros / max_cost
        points.append(f"{x + slot / 2:.1f},{cost_y:.1f}")
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "cost_points": " ".join(points),
        "max_tokens": max_tokens if any(d.tokens for d in days) else 0,
        "max_cost": usd(max_cost) if any(d.cost_micros for d in days) else Decimal(0),
        "first_day": days[0].day if days else None,
        "last_day": days[-1].day if days else None,
        "total_tokens": sum(d.tokens for d in days),
        "total_cost": usd(sum(d.cost_micros for d in days)),
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Staff only (wrapped in the admin's login check below)."""
    now = timezone.now()
    days = usage_by_day(days=30, today=now.astimezone(UTC).date())
    queues = [
        {
            "queue": depth.queue,
            "queued": depth.queued,
            "running": depth.running,
            "oldest_age_s": round(age) if (age := depth.oldest_age_seconds(now)) else None,
        }
        for depth in queue_depths()
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Parley dashboard",
        "chart": usage_chart(days),
        "jobs": job_counts_by_status(since=now - timedelta(hours=24)),
        "latency": reply_latency_by_model(since=now - timedelta(days=7)),
        "latency_limit": LATENCY_SAMPLE_LIMIT,
        "spenders": usage_top_spenders(since=month_start(now)),
        "teams": usage_by_team(since=month_start(now)),
        "queues": queues,
        "budgets": budgets_most_used(limit=10, now=now),
    }
    return render(request, "admin/parley_dashboard.html", context)


urlpatterns = [path("", admin.site.admin_view(dashboard_view), name="parley-dashboard")]
