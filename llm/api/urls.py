from django.urls import path
from rest_framework.routers import SimpleRouter

from llm.api import stream, views

router = SimpleRouter()
router.register("models", views.LLMModelViewSet, basename="model")
router.register("conversations", views.ConversationViewSet, basename="conversation")

messages = views.MessageViewSet.as_view({"get": "list", "post": "create"})
message = views.MessageViewSet.as_view({"get": "retrieve"})
regenerate = views.MessageViewSet.as_view({"post": "regenerate"})
edit = views.MessageViewSet.as_view({"post": "edit"})

urlpatterns = [
    *router.urls,
    path("conversations/<uuid:conversation_pk>/messages/", messages, name="message-list"),
    path(
        "conversations/<uuid:conversation_pk>/messages/<uuid:pk>/", message, name="message-detail"
    ),
    path(
        "conversations/<uuid:conversation_pk>/messages/<uuid:pk>/regenerate/",
        regenerate,
        name="message-regenerate",
    ),
    path(
        "conversations/<uuid:conversation_pk>/messages/<uuid:pk>/edit/", edit, name="message-edit"
    ),
    path(
        "conversations/<uuid:conversation_pk>/messages/<uuid:message_pk>/stream/",
        stream.message_stream,
        name="message-stream",
    ),
    path("usage/", views.UsageView.as_view(), name="usage"),
]
