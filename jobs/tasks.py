"""Thin RQ entry points around job services."""

import logging

from django.db import connection

from jobs.services import jobs_reconcile

logger = logging.getLogger("parley.jobs")


def reconcile_jobs_task() -> dict:
    """Periodic recovery of lost jobs (see jobs.services.jobs_reconcile)."""
    try:
        report = jobs_reconcile()
        if report.changed:
            logger.warning(
                "Reconciled jobs",
                extra={
                    "requeued": len(report.requeued),
                    "recovered": len(report.recovered),
                    "failed": len(report.failed),
                },
            )
        return {"requeued": report.requeued, "recovered": report.recovered, "failed": report.failed}
    finally:
        connection.close()
