from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs import services
from jobs.models import Job
from project.errors import DomainError


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "owner",
        "attempts",
        "max_attempts",
        "short_error",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "queue", "created_at"]
    search_fields = ["=id", "owner__email", "last_error"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Job._meta.fields]
    actions = ["retry", "cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the record of what ran is kept

    @admin.display(description="error")
    def short_error(self, job: Job) -> str:
        return job.last_error[:80]

    def _apply(self, request: HttpRequest, queryset: QuerySet[Job], change, verb: str) -> None:
        done, refused = 0, []
        for job in queryset:
            try:
                change(job=job)
                done += 1
            except DomainError as exc:
                refused.append(f"{job.pk}: {exc.detail}")
        if done:
            self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not {verb.lower()}: {reason}", messages.WARNING)

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, services.job_retry, "Retried")

    @admin.action(description="Cancel selected queued or running jobs", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, services.job_cancel, "Cancelled")
