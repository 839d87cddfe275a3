"""Parley's LLM metrics. Labels stay low-cardinality: provider, model slug, outcome."""

from prometheus_client import Counter, Gauge, Histogram

from project.money import MICROS_PER_USD

COMPLETIONS = Counter(
    "parley_llm_completions_total",
    "Completion attempts by provider, model and outcome (completed, transient_error, "
    "permanent_error, cancelled).",
    ["provider", "model", "outcome"],
)
INPUT_TOKENS = Counter(
    "parley_llm_input_tokens_total", "Input tokens of completed replies.", ["provider", "model"]
)
OUTPUT_TOKENS = Counter(
    "parley_llm_output_tokens_total", "Output tokens of completed replies.", ["provider", "model"]
)
COST = Counter(
    "parley_llm_cost_usd_total", "Cost of completed replies in USD.", ["provider", "model"]
)
DURATION = Histogram(
    "parley_llm_completion_duration_seconds",
    "Provider call duration of completed replies, request to last token.",
    ["provider", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "parley_llm_time_to_first_token_seconds",
    "Time from sending the request to the first streamed token.",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
OPEN_STREAMS = Gauge(
    "parley_sse_streams_open",
    "Server-Sent Events reply streams open right now.",
    multiprocess_mode="livesum",
)


def observe_completion(
    *,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cost_micros: int | None,
    latency_ms: int,
    time_to_first_token_ms: int | None,
) -> None:
    """Count one completed reply: outcome, tokens, cost and timings."""
    labels = {"provider": provider, "model": model}
    COMPLETIONS.labels(**labels, outcome="completed").inc()
    INPUT_TOKENS.labels(**labels).inc(input_tokens)
    OUTPUT_TOKENS.labels(**labels).inc(output_tokens)
    COST.labels(**labels).inc((cost_micros or 0) / MICROS_PER_USD)
    DURATION.labels(**labels).observe(latency_ms / 1000)
    if time_to_first_token_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(**labels).observe(time_to_first_token_ms / 1000)
