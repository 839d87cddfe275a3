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
    "parley_llm_input_tokens_total",
    "Input tokens charged for provider calls.",
    ["provider", "model"],
)
OUTPUT_TOKENS = Counter(
    "parley_llm_output_tokens_total",
    "Output tokens charged for provider calls.",
    ["provider", "model"],
)
COST = Counter(
    "parley_llm_cost_usd_total", "Cost charged for provider calls in USD.", ["provider", "model"]
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


def observe_call(
    *,
    provider: str,
    model: str,
    outcome: str,
    input_tokens: int,
    output_tokens: int,
    cost_micros: int,
    latency_ms: int | None = None,
    time_to_first_token_ms: int | None = None,
) -> None:
    """Count one ended provider call (the one place, ``llm.lifecycle``): its outcome, the
    tokens and cost charged for it (estimated ones too), and the timings of a completed one."""
    labels = {"provider": provider, "model": model}
    if outcome:
        COMPLETIONS.labels(**labels, outcome=outcome).inc()
    if input_tokens:
        INPUT_TOKENS.labels(**labels).inc(input_tokens)
    if output_tokens:
        OUTPUT_TOKENS.labels(**labels).inc(output_tokens)
    if cost_micros:
        COST.labels(**labels).inc(cost_micros / MICROS_PER_USD)
    if outcome != "completed":
        return
    if latency_ms is not None:
        DURATION.labels(**labels).observe(latency_ms / 1000)
    if time_to_first_token_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(**labels).observe(time_to_first_token_ms / 1000)
