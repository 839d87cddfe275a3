from rest_framework import serializers

from jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    error = serializers.CharField(source="last_error", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "attempts",
            "max_attempts",
            "error",
            "queue",
            "created_at",
            "enqueued_at",
            "started_at",
            "finished_at",
            "next_attempt_at",
        ]
        read_only_fields = fields


class JobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Job._meta.get_field("status").choices, required=False)
    kind = serializers.CharField(max_length=64, required=False)
