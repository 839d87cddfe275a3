"""OpenTelemetry tracing: off unless the standard OTEL_* variables turn it on.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or ``console``), or, with that
variable unset, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
is set; ``OTEL_SDK_DISABLED=true`` wins over both. The OTLP exporter is the official
HTTP/protobuf one and reads its own ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers,
timeout); ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the process.

Spans: one per HTTP request (opentelemetry-instrumentation-django), every SQL statement
(-psycopg) and Redis command (-redis), one per job run in a worker (its parent the request
that queued it: the trace context rides in the RQ job's arguments), and one per provider call
with the GenAI semantic conventions (``provider_call_span``). Prompt and reply text are never
put in spans unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``."""

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

logger = logging.getLogger("parley.tracing")
tracer = trace.get_tracer("parley")
_configured = False
_lock = threading.Lock()


def tracing_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_setup(*, environ: Mapping[str, str] = os.environ, processor: Any = None) -> bool:
    """Install the SDK's tracer provider and the Django, psycopg and Redis instrumentations,
    once per process, if the environment asks for traces (or a ``processor`` is given: tests
    pass the in-memory exporter's). Returns whether tracing is on. Called from
    ProjectConfig.ready, before any request handler loads its middleware."""
    global _configured
    if _configured:
        return True
    if processor is None and not tracing_wanted(environ):
        return False
    with _lock:
        if _configured:
            return True
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "parley"})
        provider = TracerProvider(resource=resource)
        if processor is not None:
            provider.add_span_processor(processor)
        else:
            names = environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
            for name in (n.strip() for n in names):
                if name == "otlp":
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                        OTLPSpanExporter,
                    )

                    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
                elif name == "console":
                    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
                elif name not in ("", "none"):
                    logger.warning("Unknown OTEL_TRACES_EXPORTER entry", extra={"name": name})
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument(
            is_sql_commentor_enabled=False,
            # Probes and scrapes would drown the traces that matter.
            excluded_urls=environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "healthz,readyz,metrics"),
            request_hook=_request_without_query,
        )
        PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
        RedisInstrumentor().instrument()
        _configured = True
    return True


_URL_ATTRIBUTES = ("http.url", "url.full")


def _request_without_query(span: Span, request: Any) -> None:
    """A query string may carry a token: spans get the URL without it."""
    if not span.is_recording() or not request.META.get("QUERY_STRING"):
        return
    without = request.build_absolute_uri(request.path)
    for key in _URL_ATTRIBUTES:
        span.set_attribute(key, without)
    span.set_attribute("http.target", request.path)
    span.set_attribute("url.query", "[redacted]")


def capture_content() -> bool:
    from django.conf import settings

    return settings.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT


def current_context() -> Any:
    """The active trace context, to parent a span started later (a stream read after the
    request's own span has ended)."""
    return otel_context.get_current()


# --- the job: context carried from the request that queued it ------------------------------


def trace_carrier() -> dict[str, str]:
    """The current trace context (W3C ``traceparent``/``tracestate``) as a small dict that
    travels in the RQ job's arguments; empty when tracing is off."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def job_span(*, job_id: str, carrier: Mapping[str, str] | None) -> Iterator[Span]:
    """The span of one job run in a worker, child of the span that queued it."""
    parent = propagate.extract(dict(carrier or {}))
    with tracer.start_as_current_span(
        "job",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rq",
            "messaging.operation.type": "process",
            "parley.job.id": job_id,
        },
    ) as span:
        yield span


# --- provider calls: GenAI semantic conventions ---------------------------------------------


@contextmanager
def provider_call_span(
    *,
    system: str,
    request_model: str,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    messages: Any = None,
    current: bool = True,
    parent: Any = None,
) -> Iterator[Span]:
    """A CLIENT span named ``chat <model>`` around one provider call. ``current=False`` for
    async generators, where a context attached before a ``yield`` cannot be detached after
    it; the span is then only a child of the caller's span (``parent``: a context captured
    earlier, see ``current_context``)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.provider.name": system,
        "gen_ai.request.model": request_model,
    }
    for key, value in (
        ("gen_ai.request.max_tokens", max_tokens),
        ("gen_ai.request.temperature", temperature),
        ("gen_ai.request.top_p", top_p),
    ):
        if value is not None:
            attributes[key] = value
    span = tracer.start_span(
        f"chat {request_model}", context=parent, kind=SpanKind.CLIENT, attributes=attributes
    )
    if messages is not None and span.is_recording() and capture_content():
        span.set_attribute("gen_ai.input.messages", str(messages))
    token = otel_context.attach(trace.set_span_in_context(span)) if current else None
    try:
        yield span
    except GeneratorExit:  # the caller stopped reading a stream (cancelled, disconnected)
        span.set_attribute("parley.stream_abandoned", True)
        raise
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        if token is not None:
            otel_context.detach(token)
        span.end()


def provider_call_result(span: Span, result: Any, *, response_model: str = "") -> None:
    """Record what the provider answered on its span (token counts, finish reason, ids)."""
    if not span.is_recording():
        return
    if response_model:
        span.set_attribute("gen_ai.response.model", response_model)
    span.set_attribute("gen_ai.response.id", result.response_id or "")
    span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
    span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason or ""])
    if capture_content():
        span.set_attribute("gen_ai.output.messages", result.text)
