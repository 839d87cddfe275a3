"""Metrics of the compatible API. Provider calls it makes also count in the LLM metrics
(``llm/metrics.py``: completions, tokens, cost, duration), like conversation replies."""

from prometheus_client import Counter

GATEWAY_CALLS = Counter(
    "parley_gateway_calls_total",
    "Calls to the OpenAI/Anthropic-compatible API by endpoint, model and status (completed, "
    "failed, refused, cancelled).",
    ["endpoint", "model", "status"],
)
