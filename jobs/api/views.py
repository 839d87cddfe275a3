from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import selectors, services
from jobs.api import serializers
from jobs.models import Job

TAG = ["jobs"]


@extend_schema_view(
    list=extend_schema(
        tags=TAG,
        summary="Your jobs, newest first (staff: everyone's)",
        parameters=[serializers.JobFilterSerializer],
    ),
    retrieve=extend_schema(tags=TAG, summary="One job: poll it for a completion's progress"),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.JobSerializer
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        filters = serializers.JobFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.job_list(user=self.request.user, **filters.validated_data)

    @extend_schema(
        tags=TAG,
        request=None,
        summary="Cancel a queued or running job",
        description="A queued job is cancelled at once; a running one is stopped and its "
        "partial reply kept, marked cancelled. A finished job answers 409.",
        extensions={"x-error-statuses": ["409"]},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        job = services.job_cancel(job=self.get_object())
        return Response(self.get_serializer(job).data)

    @extend_schema(
        tags=TAG,
        request=None,
        summary="Retry a failed or cancelled job",
        description="The job is queued again with a fresh budget of attempts; any other "
        "status answers 409.",
        extensions={"x-error-statuses": ["409"]},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk=None) -> Response:
        job = services.job_retry(job=self.get_object())
        return Response(self.get_serializer(job).data)
