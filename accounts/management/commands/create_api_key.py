from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Issue an API key for a user and print its secret. The secret is shown only this once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args, email: str, name: str, expires_in_days: int | None, **options) -> None:
        user = User.objects.with_email(email).first()
        if user is None:
            raise CommandError(f"No user with email {email}.")
        if not user.is_active:
            raise CommandError(f"{email} is inactive; its keys would not work.")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        if len(name) > 100:
            raise CommandError("--name may be at most 100 characters.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        issued = api_key_create(owner=user, name=name, expires_at=expires_at)
        self.stderr.write(
            f"API key '{name}' (prefix {issued.api_key.prefix}) for {user.email}. Store it now:"
        )
        self.stdout.write(issued.secret)
