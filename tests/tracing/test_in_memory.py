"""Spans recorded with the SDK's in-memory exporter in this process: the request, the job
and the GenAI provider span of one reply share a trace; text stays out unless asked for;
query strings stay out; and nothing is traced unless the OTEL_* variables say so."""

import json

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from project import tracing
from tests.live import work_until_idle
from tests.llm.factories import StandinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)


class _Switchable(InMemorySpanExporter):
    """Keeps spans only while a test of this module runs: the tracer provider, once set, is
    the process's for good, and later tests should not fill memory with spans."""

    on = False

    def export(self, spans: "list[ReadableSpan]") -> SpanExportResult:
        return super().export(spans) if self.on else SpanExportResult.SUCCESS


_exporter = _Switchable()


@pytest.fixture(scope="module")
def instrumented():
    tracing.tracing_setup(processor=SimpleSpanProcessor(_exporter))
    yield
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (DjangoInstrumentor(), PsycopgInstrumentor(), RedisInstrumentor()):
        instrumentor.uninstrument()


@pytest.fixture
def spans(instrumented, standin):
    _exporter.clear()
    _exporter.on = True
    yield _exporter
    _exporter.on = False
    _exporter.clear()


def reply_once(auth_client, content: str) -> dict:
    entry = StandinModelFactory(slug="traced", provider_model="standin-chat")
    conversation = auth_client.post("/api/v1/conversations/", {"model": entry.slug}).json()
    posted = auth_client.post(
        f"/api/v1/conversations/{conversation['id']}/messages/", {"content": content}
    )
    assert posted.status_code == 202
    work_until_idle()
    return posted.json()


def test_request_job_and_provider_call_are_one_trace(spans, auth_client):
    posted = reply_once(auth_client, "tell me about otters-777")
    finished = spans.get_finished_spans()
    post = next(
        s
        for s in finished
        if s.kind == SpanKind.SERVER
        and s.attributes.get("http.route", "")
        and "messages" in s.attributes["http.route"]
    )
    job = next(s for s in finished if s.name == "job llm.completion")
    call = next(s for s in finished if s.name == "chat standin-chat")
    assert post.context.trace_id == job.context.trace_id == call.context.trace_id
    assert call.parent.span_id == job.context.span_id
    assert job.attributes["parley.job.id"] == posted["job"]["id"]
    assert job.attributes["messaging.destination.name"] == "completions"
    assert call.attributes["gen_ai.system"] == "openai"
    assert call.attributes["gen_ai.request.model"] == "standin-chat"
    assert call.attributes["gen_ai.usage.output_tokens"] == 24
    assert tuple(call.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert any(
        s.attributes.get("db.system") == "redis" and s.context.trace_id == post.context.trace_id
        for s in finished
    )
    assert "otters-777" not in json.dumps([dict(s.attributes) for s in finished], default=str)


def test_prompt_and_reply_text_only_when_a_setting_says_so(spans, auth_client, settings):
    settings.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = True
    reply_once(auth_client, "tell me about otters-777")
    call = next(s for s in spans.get_finished_spans() if s.name == "chat standin-chat")
    assert "otters-777" in call.attributes["gen_ai.input.messages"]
    assert "otters-777" in call.attributes["gen_ai.output.messages"]


def test_a_failed_provider_call_is_an_error_span(spans, auth_client):
    entry = StandinModelFactory(slug="broken", provider_model="standin-400")
    conversation = auth_client.post("/api/v1/conversations/", {"model": entry.slug}).json()
    auth_client.post(f"/api/v1/conversations/{conversation['id']}/messages/", {"content": "hi"})
    work_until_idle()
    call = next(s for s in spans.get_finished_spans() if s.name == "chat standin-400")
    assert not call.status.is_ok
    assert call.attributes["error.type"] == "PermanentProviderError"


def test_query_strings_stay_out_of_request_spans(spans, auth_client):
    auth_client.get("/api/v1/jobs/?access_token=sekrit-query-value")
    server = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server
    assert "sekrit-query-value" not in json.dumps([dict(s.attributes) for s in server])


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_turn_it_on(environ, wanted):
    assert tracing.tracing_wanted(environ) is wanted


def test_a_v1_call_in_the_web_process_is_traced_under_its_request(spans, auth_client):
    stream = False  # (a streamed call's span, parented at astream(), is not covered here)
    StandinModelFactory(slug="traced", provider_model="standin-chat")
    response = auth_client.post(
        "/v1/chat/completions",
        {
            "model": "traced",
            "stream": stream,
            "messages": [{"role": "user", "content": "otters-888"}],
        },
        format="json",
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    call = next(s for s in finished if s.name == "chat standin-chat")
    server = next(s for s in finished if s.kind == SpanKind.SERVER and "completions" in s.name)
    assert call.context.trace_id == server.context.trace_id
    assert call.attributes["gen_ai.usage.output_tokens"] > 0
    assert "otters-888" not in json.dumps([dict(s.attributes) for s in finished], default=str)
