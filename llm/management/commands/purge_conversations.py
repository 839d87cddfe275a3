from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from accounts.models import User
from llm.selectors import conversations_purgeable
from llm.services import conversations_purge


class Command(BaseCommand):
    help = (
        "Delete conversations (and their messages) not updated for DAYS days, in batches. "
        "Usage totals are kept: usage rows outlive the messages they counted. Conversations "
        "with a reply still being written are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")
        parser.add_argument("--user", metavar="EMAIL", help="Only this user's conversations.")
        parser.add_argument("--archived-only", action="store_true")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(
        self,
        *args,
        older_than: int,
        user: str | None,
        archived_only: bool,
        batch_size: int,
        dry_run: bool,
        **options,
    ) -> None:
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        owner = None
        if user:
            owner = User.objects.filter(email__iexact=user).first()
            if owner is None:
                raise CommandError(f"No user with email {user}.")
        cutoff = timezone.now() - timedelta(days=older_than)
        candidates = conversations_purgeable(
            updated_before=cutoff, owner=owner, archived_only=archived_only
        )
        total = candidates.count()
        if dry_run:
            messages = sum(c.messages.count() for c in candidates.only("pk"))
            self.stdout.write(
                f"[dry run] would delete {total} conversation(s) with {messages} message(s)"
            )
            return
        with tqdm(
            total=total, unit="conv", disable=total < batch_size or None, file=self.stderr
        ) as bar:
            result = conversations_purge(
                conversations=candidates, batch_size=batch_size, on_batch=bar.update
            )
        self.stdout.write(
            f"deleted {result.conversations} conversation(s) with {result.messages} message(s); usage totals kept"
        )
