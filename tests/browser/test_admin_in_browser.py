"""Staff use the admin in a real Chromium against a live server, real PostgreSQL and Redis and
a real RQ worker: sign in, read the dashboard's charts, retry a failed job, open the django-rq
dashboard. Screenshots of each step go to the test's temporary folder."""

import re
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from conftest import PASSWORD
from jobs.models import Job
from llm.models import Usage
from tests.browser.conftest import browser_page
from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Tokens per day for three of the last 30 days: the tallest bar is two days ago.
USAGE_BY_DAYS_AGO = {0: 1_500, 2: 6_000, 5: 3_000}


def failed_completion_job(client) -> Job:
    """A completion that fails for good (the stand-in answers 400), run by a real worker."""
    model = StandinModelFactory(slug="browser-broken", provider_model="standin-400")
    conversation = client.post(
        "/api/v1/conversations/", {"model": model.slug, "title": "Broken"}, format="json"
    )
    assert conversation.status_code == 201, conversation.content
    posted = client.post(
        f"/api/v1/conversations/{conversation.json()['id']}/messages/",
        {"content": "This will fail"},
        format="json",
    )
    assert posted.status_code == 202, posted.content
    work_until_idle()
    job = Job.objects.get(pk=posted.json()["job"]["id"])
    assert job.status == "failed"
    return job


def usage_history(user) -> None:
    model = StandinModelFactory(slug="browser-usage")
    now = timezone.now()
    for days_ago, tokens in USAGE_BY_DAYS_AGO.items():
        Usage.objects.create(
            user=user,
            model=model,
            input_tokens=tokens // 3,
            output_tokens=tokens - tokens // 3,
            cost_micros=tokens * 1000,
            created_at=now - timedelta(days=days_ago),
        )


def rendered_bar_heights(page) -> list[float]:
    """Heights the browser laid out for the token bars (rects that carry a title)."""
    chart = page.locator("#content-main svg").first
    return chart.evaluate(
        "svg => Array.from(svg.querySelectorAll('rect'))"
        "  .filter(rect => rect.querySelector('title'))"
        "  .map(rect => rect.getBoundingClientRect().height)"
    )


def shown_status(page) -> str:
    """The status a job's admin page shows (read-only field)."""
    return page.locator(".field-status .readonly").inner_text().strip().lower()


def test_staff_read_the_dashboard_retry_a_job_and_open_the_rq_dashboard(
    chromium, live_server, standin, staff_user, auth_client, user, tmp_path
):
    job = failed_completion_job(auth_client)
    usage_history(user)

    with browser_page(chromium, tmp_path) as page:
        # Sign in: the admin sends an anonymous visitor to its login form.
        page.goto(f"{live_server.url}/admin/")
        assert "/admin/login/" in page.url
        page.shot("01-login")
        page.fill("#id_username", staff_user.email)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.shot("02-admin-index")

        # The dashboard, linked from the index: the chart is drawn with the usage rows.
        page.click("text=Parley dashboard")
        page.wait_for_url(re.compile("/admin/dashboard/$"))
        page.locator("#content-main svg").first.wait_for()
        page.shot("03-dashboard")
        heights = rendered_bar_heights(page)
        assert len(heights) == 30  # one bar per day
        drawn = [h for h in heights if h > 0]
        assert len(drawn) == len(USAGE_BY_DAYS_AGO)
        tallest_day_index = 29 - max(USAGE_BY_DAYS_AGO, key=USAGE_BY_DAYS_AGO.get)
        assert heights[tallest_day_index] == max(heights)
        cost_line = page.locator("#content-main svg polyline").first.bounding_box()
        assert cost_line is not None and cost_line["width"] > 0 and cost_line["height"] > 0
        total_tokens = sum(USAGE_BY_DAYS_AGO.values())
        assert page.get_by_text(f"{total_tokens} tokens").count() >= 1

        # The failed job: open it, then retry it from the list with the admin action.
        page.goto(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
        page.click(f"a[href*='/admin/jobs/job/{job.pk}/change/']")
        page.wait_for_url(re.compile(f"/admin/jobs/job/{job.pk}/change/"))
        assert shown_status(page) == "failed"
        page.shot("04-failed-job")
        page.go_back()
        page.check(f"input[name=_selected_action][value='{job.pk}']")
        page.select_option("select[name=action]", "retry")
        page.click("button[name=index]")
        success = page.locator(".messagelist .success")
        success.wait_for()
        assert re.search(r"Retried 1 job", success.inner_text())
        page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
        assert shown_status(page) == "queued"
        page.shot("05-job-retried")

        # The django-rq dashboard, linked from the admin index, shows the job waiting.
        page.goto(f"{live_server.url}/admin/")
        page.click("a[href='/admin/django_rq/dashboard/']")
        page.wait_for_url(re.compile("/admin/django_rq/dashboard/$"))
        row = page.locator("#results_list tbody tr", has_text=job.queue).first
        queued_cell = row.locator("th, td").nth(1)
        assert queued_cell.inner_text().strip() == "1"
        page.shot("06-rq-dashboard")

    job.refresh_from_db()
    assert job.status == "queued"
    assert str(job.pk) in django_rq.get_queue(job.queue).job_ids
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [
        "01-login.png",
        "02-admin-index.png",
        "03-dashboard.png",
        "04-failed-job.png",
        "05-job-retried.png",
        "06-rq-dashboard.png",
    ]
