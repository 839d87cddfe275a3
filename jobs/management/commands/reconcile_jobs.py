from django.core.management.base import BaseCommand, CommandParser

from jobs.services import jobs_reconcile


class Command(BaseCommand):
    help = (
        "Recover jobs the queue lost: re-enqueue queued jobs missing from Redis, and retry (or "
        "fail) running jobs whose worker stopped sending heartbeats. Also runs every "
        "JOBS_RECONCILE_INTERVAL seconds under `manage.py rqcron jobs.cron`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report, change nothing.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        report = jobs_reconcile(dry_run=dry_run)
        prefix = "[dry run] would have " if dry_run else ""
        self.stdout.write(
            f"{prefix}re-enqueued {len(report.requeued)} queued job(s), "
            f"retried {len(report.recovered)} and failed {len(report.failed)} job(s) whose worker died"
        )
        for label, ids in (
            ("re-enqueued", report.requeued),
            ("retried", report.recovered),
            ("failed", report.failed),
        ):
            for job_id in ids:
                self.stdout.write(f"  {label} {job_id}")
        for name, fixed in report.steps.items():
            self.stdout.write(f"{prefix}{name}: {fixed}")
