from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from llm.models import LLMModel
from llm.seed_catalog import DEFAULT_CATALOG, STANDIN_FAULT_CATALOG


class Command(BaseCommand):
    help = (
        "Load the default model catalog (current OpenAI and Anthropic chat models and the local "
        "stand-ins). Existing rows are left as staff edited them unless --update is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--update", action="store_true", help="Overwrite existing rows with the defaults."
        )
        parser.add_argument("--dry-run", action="store_true", help="Report without writing.")
        parser.add_argument(
            "--standin-faults",
            action="store_true",
            help="Also add the stand-in's fault models (standin-gpt-429, standin-claude-drop...).",
        )

    @transaction.atomic
    def handle(
        self, *args, update: bool, dry_run: bool, standin_faults: bool = False, **options
    ) -> None:
        created = updated = unchanged = 0
        catalog = DEFAULT_CATALOG + (STANDIN_FAULT_CATALOG if standin_faults else [])
        for entry in catalog:
            fields = {k: v for k, v in entry.items() if k != "slug"}
            existing = LLMModel.objects.filter(slug=entry["slug"]).first()
            if existing is None:
                created += 1
                if not dry_run:
                    LLMModel.objects.create(slug=entry["slug"], **fields)
            elif update:
                updated += 1
                if not dry_run:
                    for name, value in fields.items():
                        setattr(existing, name, value)
                    existing.save()
            else:
                unchanged += 1
        prefix = "[dry run] " if dry_run else ""
        self.stdout.write(
            f"{prefix}models: {created} created, {updated} updated, {unchanged} left as they were"
        )
