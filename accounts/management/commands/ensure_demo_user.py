from django.core.management.base import BaseCommand, CommandParser

from accounts.models import User


class Command(BaseCommand):
    help = "Create (or reset) the demo staff user the run command prints. Safe to run repeatedly."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="demo@parley.local")
        parser.add_argument("--password", default="parley-demo-password")

    def handle(self, *args, email: str, password: str, **options) -> None:
        user, created = User.objects.get_or_create(
            email=email, defaults={"name": "Demo", "is_staff": True, "is_superuser": True}
        )
        # Reset every time, so the printed login always works.
        user.set_password(password)
        user.is_active = user.is_staff = user.is_superuser = True
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} demo user {email}")
