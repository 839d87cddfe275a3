import csv
import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser

from llm.selectors import usage_totals
from project.money import usd

# Cached tokens are part of the input tokens (read from / written to the prompt cache).
COLUMNS = [
    "input_tokens",
    "output_tokens",
    "cost",
    "requests",
    "cache_read_tokens",
    "cache_write_tokens",
]


class Command(BaseCommand):
    help = "Tokens, cost (USD) and request counts between two dates (UTC, both included)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
        parser.add_argument("--until", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
        parser.add_argument(
            "--group-by", choices=["user", "model", "day", "api_key", "team"], default="user"
        )
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")

    def handle(
        self, *args, since: date, until: date, group_by: str, format: str, **options
    ) -> None:
        if until < since:
            raise CommandError("--until is before --since.")
        rows = [
            {
                **{k: v for k, v in row.items() if k != "cost_micros"},
                "cost": usd(row["cost_micros"]),
            }
            for row in usage_totals(since=since, until=until, group_by=group_by)
        ]
        key = group_by
        if format == "json":
            payload = [{**row, "cost": str(row["cost"])} for row in rows]
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        elif format == "csv":
            writer = csv.DictWriter(self.stdout, fieldnames=[key, *COLUMNS], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            self._table(key, rows)

    def _table(self, key: str, rows: list[dict]) -> None:
        header = [key, *COLUMNS]
        cells = [[str(row[c]) for c in header] for row in rows]
        totals = {c: sum(row[c] for row in rows) for c in COLUMNS}
        cells.append(["TOTAL", *(str(totals[c]) for c in COLUMNS)])
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
        self.stdout.write(line)
        self.stdout.write("-" * len(line))
        for row in cells:
            self.stdout.write(
                "  ".join(
                    v.rjust(w) if i else v.ljust(w)
                    for i, (v, w) in enumerate(zip(row, widths, strict=True))
                )
            )
