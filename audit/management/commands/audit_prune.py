from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_cutoff, audit_prune


class Command(BaseCommand):
    help = "Delete audit events and model change entries older than --older-than DAYS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args, older_than: int, **options) -> None:
        if older_than < 1:
            raise CommandError("--older-than must be at least 1 day.")
        deleted = audit_prune(older_than=audit_cutoff(days=older_than))
        self.stdout.write(
            f"Deleted {deleted['events']} audit event(s) and {deleted['changes']} change "
            f"entr{'y' if deleted['changes'] == 1 else 'ies'} older than {older_than} days."
        )
