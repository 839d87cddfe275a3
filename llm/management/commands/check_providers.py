import asyncio
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from llm.catalog import provider_target
from llm.lifecycle import provider_for
from llm.models import LLMModel, ModelKind
from llm.providers import ChatMessage, ChatRequest, ProviderError
from llm.providers.endpoints import aembed


class Command(BaseCommand):
    help = (
        "Send one tiny request to each enabled model (or --model SLUG) and print its latency or "
        "error. Exits non-zero when any configured model fails: usable as a deploy check. Models "
        "whose provider has no key are listed as not configured and do not fail the check."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", metavar="SLUG", help="Check only this model.")
        parser.add_argument("--timeout", type=float, default=20.0, help="Seconds per request.")

    def handle(self, *args, model: str | None, timeout: float, **options) -> None:
        models = LLMModel.objects.filter(enabled=True)
        if model:
            models = LLMModel.objects.filter(slug=model)
            if not models.exists():
                raise CommandError(f"No model with slug {model}.")
        failures = 0
        for entry in models:
            target = provider_target(entry)
            if target is None:
                self.stdout.write(f"{entry.slug:<24} not configured (no key / no stand-in)")
                if model:
                    failures += 1
                continue
            if entry.kind == ModelKind.EMBEDDING:
                failures += self._check_embedding(entry.slug, target, timeout)
                continue
            # A diagnostic: straight to the provider, no admission or accounting.
            provider = provider_for(target, timeout=timeout)
            request = ChatRequest(
                model=target.model,
                messages=[ChatMessage(role="user", content="Reply with the word ok.")],
                max_tokens=8,
            )
            started = time.perf_counter()
            try:
                result = provider.complete(request)
            except ProviderError as exc:
                failures += 1
                kind = "transient" if exc.transient else "permanent"
                self.stdout.write(self.style.ERROR(f"{entry.slug:<24} FAILED ({kind}): {exc}"))
                continue
            elapsed = (time.perf_counter() - started) * 1000
            self.stdout.write(
                self.style.SUCCESS(f"{entry.slug:<24} ok in {elapsed:.0f} ms")
                + f" (first token {result.time_to_first_token_ms} ms, {result.output_tokens} tokens)"
            )
        if failures:
            raise CommandError(f"{failures} model(s) failed the check.")

    def _check_embedding(self, slug: str, target, timeout: float) -> int:
        """Embed one word; 1 when it failed."""
        body = {"model": target.model, "input": "ok"}
        started = time.perf_counter()
        try:
            asyncio.run(
                aembed(api_key=target.api_key, base_url=target.base_url, timeout=timeout, body=body)
            )
        except ProviderError as exc:
            kind = "transient" if exc.transient else "permanent"
            self.stdout.write(self.style.ERROR(f"{slug:<24} FAILED ({kind}): {exc}"))
            return 1
        elapsed = (time.perf_counter() - started) * 1000
        self.stdout.write(self.style.SUCCESS(f"{slug:<24} ok in {elapsed:.0f} ms") + " (embedding)")
        return 0
