from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from llm import selectors
from llm.api import serializers


@extend_schema_view(
    list=extend_schema(
        tags=["models"],
        summary="Models you can use now",
        description="Enabled models whose provider is configured (a key, or the local stand-in). "
        "Prices are USD per million tokens, as decimal strings.",
    ),
    retrieve=extend_schema(tags=["models"], summary="One usable model by slug"),
)
class LLMModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.LLMModelSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_.]+"

    def get_queryset(self):
        return selectors.model_catalog()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(selectors.model_list_available())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def get_object(self):
        model = selectors.model_find_available(slug=self.kwargs["slug"])
        if model is None:
            raise Http404
        return model
