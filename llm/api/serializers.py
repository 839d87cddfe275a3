from rest_framework import serializers

from llm.models import LLMModel


class LLMModelSerializer(serializers.ModelSerializer):
    input_price_per_mtok = serializers.DecimalField(max_digits=10, decimal_places=4, coerce_to_string=True)
    output_price_per_mtok = serializers.DecimalField(max_digits=10, decimal_places=4, coerce_to_string=True)

    class Meta:
        model = LLMModel
        fields = [
            "slug",
            "provider",
            "display_name",
            "context_window",
            "max_output_tokens",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "is_standin",
        ]
        read_only_fields = fields
