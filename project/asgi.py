"""ASGI entry point: the server Parley runs under, so Server-Sent Events streams are cheap
async tasks instead of blocked threads."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.production")
django_application = get_asgi_application()

from project.middleware import BodyLimitASGIMiddleware  # noqa: E402  needs settings loaded

application = BodyLimitASGIMiddleware(django_application)
