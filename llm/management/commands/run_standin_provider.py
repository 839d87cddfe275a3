from django.core.management.base import BaseCommand, CommandParser

from llm.standin import StandinServer


class Command(BaseCommand):
    help = (
        "Run the local stand-in provider (OpenAI and Anthropic wire formats) in the foreground. "
        "Point OpenAI clients at http://HOST:PORT/v1 and Anthropic clients at http://HOST:PORT. "
        "See llm/standin/behaviour.py for model names and headers that choose faults and timing."
    )
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--latency-ms", type=int, default=300, help="Time to first token.")
        parser.add_argument("--tokens-per-second", type=float, default=40.0, help="0 = no pacing.")
        parser.add_argument("--reply-tokens", type=int, default=60)

    def handle(
        self,
        *args,
        host: str,
        port: int,
        latency_ms: int,
        tokens_per_second: float,
        reply_tokens: int,
        **options,
    ) -> None:
        server = StandinServer(
            host,
            port,
            latency_ms=latency_ms,
            tokens_per_second=tokens_per_second,
            reply_tokens=reply_tokens,
        )
        self.stdout.write(f"stand-in provider listening on {server.url}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
