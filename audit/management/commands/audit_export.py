from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from audit.services import audit_lines


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not a date or time: {value!r}")
        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else make_aware(moment)


class Command(BaseCommand):
    help = (
        "Write the audit trail (security events and model changes) as JSON lines, oldest "
        "first, to stdout or --output."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="date or ISO time (inclusive)")
        parser.add_argument("--until", help="date or ISO time (exclusive)")
        parser.add_argument("--output", help="file to write (default: stdout)")

    def handle(self, *args, since=None, until=None, output=None, **options) -> None:
        lines = audit_lines(since=_when(since), until=_when(until))
        out = open(output, "w", encoding="utf-8") if output else self.stdout
        count = 0
        try:
            for line in lines:
                out.write(line + "\n")
                count += 1
        finally:
            if output:
                out.close()
        self.stderr.write(f"{count} audit line(s) written.")
