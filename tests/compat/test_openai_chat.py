"""OpenAI's own SDK against a live Parley: models, chat completions plain and streamed for
both provider families (Anthropic models translated), and every error class the SDK maps."""

import openai
import pytest

from llm.models import GatewayCall, Usage
from llm.providers import completion_cost_micros
from tests.compat.conftest import FAMILIES, faulty_model, recorded_call

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about Parley"},
]
REPLY_START = 'You said: "Tell me about Parley". (Following a system prompt of 9 characters.)'


def test_models_list_and_retrieve(openai_client):
    slugs = {model.id for model in openai_client.models.list()}
    assert {"gpt-standin", "claude-standin"} <= slugs
    model = openai_client.models.retrieve("claude-standin")
    assert model.id == "claude-standin" and model.owned_by == "anthropic"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_completion_is_translated_and_accounted(openai_client, standin, api_key, family):
    slug = f"{'gpt' if family == 'openai' else 'claude'}-standin"
    completion = openai_client.chat.completions.create(
        model=slug, messages=PROMPT, max_tokens=100, temperature=0.5, top_p=0.9, user="alice"
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith(REPLY_START)
    assert choice.finish_reason == "stop"
    assert completion.model == slug
    assert completion.usage.completion_tokens == 24
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    sent = standin.last_request
    if family == "anthropic":  # translated: system apart, Anthropic's fields and path
        assert sent.path == "/v1/messages"
        assert sent.body["system"] == "Be brief."
        assert sent.body["messages"] == [{"role": "user", "content": "Tell me about Parley"}]
    else:
        assert sent.path == "/v1/chat/completions"
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.body["max_tokens"] == 100 and sent.body["top_p"] == 0.9
    assert api_key.secret not in str(sent.headers)  # the caller's key never leaves Parley

    call = recorded_call()
    assert completion.id == f"chatcmpl-{call.id.hex}"
    assert (call.user_id, call.api_key_id, call.model.slug) == (
        api_key.api_key.owner_id,
        api_key.api_key.pk,
        slug,
    )
    assert (call.endpoint, call.status, call.http_status, call.stream) == (
        "chat.completions",
        "completed",
        200,
        False,
    )
    assert call.input_tokens == completion.usage.prompt_tokens
    assert call.output_tokens == 24
    assert call.cost_micros == completion_cost_micros(
        input_tokens=call.input_tokens,
        output_tokens=24,
        input_price_per_mtok=call.model.input_price_per_mtok,
        output_price_per_mtok=call.model.output_price_per_mtok,
    )
    assert call.client_user == "alice" and call.request_id and call.latency_ms >= 0
    assert call.prompt is None and call.reply == ""  # text is kept only when the setting says
    usage = Usage.objects.get()
    assert (usage.user_id, usage.cost_micros, usage.output_tokens) == (
        call.user_id,
        call.cost_micros,
        24,
    )
    assert call.usage_id == usage.pk


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_completion_with_usage(openai_client, family):
    slug = f"{'gpt' if family == 'openai' else 'claude'}-standin"
    stream = openai_client.chat.completions.create(
        model=slug,
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(REPLY_START)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 24
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    assert len({c.id for c in chunks}) == 1
    call = recorded_call()
    assert (call.status, call.stream, call.output_tokens) == ("completed", True, 24)
    assert call.time_to_first_token_ms is not None


def test_stop_sequences_are_translated_for_an_anthropic_model(openai_client, standin):
    completion = openai_client.chat.completions.create(
        model="claude-standin", messages=PROMPT, stop=["Parley"]
    )
    assert standin.last_request.body["stop_sequences"] == ["Parley"]
    assert completion.choices[0].message.content == 'You said: "Tell me about '
    assert completion.choices[0].finish_reason == "stop"


def test_tools_pass_through_to_an_openai_model(openai_client, standin):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    completion = openai_client.chat.completions.create(
        model="gpt-standin", messages=PROMPT, tools=tools, tool_choice="auto"
    )
    assert standin.last_request.body["tools"] == tools
    assert standin.last_request.body["tool_choice"] == "auto"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "weather"
    assert call.function.arguments == '{"city": "Tell me about Parley"}'
    # ...and the tool's answer goes back as the provider's own turns.
    follow_up = openai_client.chat.completions.create(
        model="gpt-standin",
        tools=tools,
        messages=[
            *PROMPT,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert standin.last_request.body["messages"][-1]["role"] == "tool"
    assert follow_up.choices[0].finish_reason == "stop"


def test_tools_stream_through_to_an_openai_model(openai_client):
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "weather", "parameters": parameters}}]
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-standin", messages=PROMPT, tools=tools, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "weather"
    assert "".join(tc.function.arguments for tc in calls) == '{"city": "Tell me about Parley"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                        ],
                    }
                ]
            },
            "messages[0].content",
        ),
    ],
)
def test_what_an_anthropic_model_cannot_do_is_a_400_naming_the_parameter(
    openai_client, options, param
):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            **{"model": "claude-standin", "messages": PROMPT, **options}
        )
    assert caught.value.body["param"] == param
    assert caught.value.body["code"] == "unsupported_parameter"
    call = GatewayCall.objects.order_by("created_at").last()
    assert (call.status, call.http_status, call.model.slug) == ("refused", 400, "claude-standin")


def test_neutral_values_are_accepted_for_an_anthropic_model(openai_client, standin):
    completion = openai_client.chat.completions.create(
        model="claude-standin",
        messages=PROMPT,
        frequency_penalty=0,
        presence_penalty=0,
        response_format={"type": "text"},
        logit_bias={},
        store=False,
        tools=[],
        service_tier="auto",
        logprobs=False,
        n=1,
        seed=7,
    )
    assert completion.choices[0].message.content.startswith(REPLY_START)
    sent = standin.last_request.body
    assert not {"tools", "service_tier", "store", "logit_bias", "seed"} & sent.keys()


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 2, "stream": True}, "n"),
        ({"max_tokens": 0}, "max_tokens"),  # one above the model's is lowered to it
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ],
)
def test_bad_parameters_are_400s_naming_them(openai_client, options, param):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            **{"model": "gpt-standin", "messages": PROMPT, **options}
        )
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param


def test_temperature_above_anthropics_range_is_refused_not_clamped(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="claude-standin", messages=PROMPT, temperature=1.5
        )
    assert caught.value.body["param"] == "temperature"


def test_bad_credentials_are_401(parley):
    for key in ("prl_nope_nope", "not-a-jwt"):
        with openai.OpenAI(base_url=f"{parley}/v1", api_key=key, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="gpt-standin", messages=PROMPT)
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
    assert not GatewayCall.objects.exists()  # no caller, nothing to account to


def test_a_jwt_works_as_the_bearer(parley, auth_client):
    token = auth_client._credentials["HTTP_AUTHORIZATION"].split()[1]
    with openai.OpenAI(base_url=f"{parley}/v1", api_key=token, max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-standin", messages=PROMPT)
    assert completion.choices[0].message.content.startswith(REPLY_START)
    assert recorded_call().api_key is None


def test_unknown_model_is_404(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="gpt-99", messages=PROMPT)
    assert caught.value.body["code"] == "model_not_found"
    call = recorded_call()
    assert (call.status, call.http_status, call.model, call.model_requested) == (
        "refused",
        404,
        None,
        "gpt-99",
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stream", [False, True])
def test_provider_429_is_a_429_with_retry_after(openai_client, family, stream):
    model = faulty_model(family, "429")
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model=model.slug, messages=PROMPT, stream=stream)
    assert caught.value.response.headers["retry-after"] == "1"
    call = recorded_call()
    assert (call.status, call.http_status) == ("failed", 429)


@pytest.mark.parametrize("family", FAMILIES)
def test_provider_failure_is_a_5xx_never_500(openai_client, family):
    for directive in ("500", "401", "drop"):
        model = faulty_model(family, directive)
        with pytest.raises(openai.InternalServerError) as caught:
            openai_client.chat.completions.create(model=model.slug, messages=PROMPT)
        assert caught.value.status_code == 502
        assert "standin-local-key" not in caught.value.response.text


def test_provider_timeout_is_a_504(openai_client, settings):
    settings.LLM_REQUEST_TIMEOUT = 0.5
    model = faulty_model("openai", "hang")
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(model=model.slug, messages=PROMPT)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "provider_timeout"


def test_a_failure_mid_stream_reaches_the_client_as_an_error(openai_client):
    model = faulty_model("openai", "errorevent")
    stream = openai_client.chat.completions.create(model=model.slug, messages=PROMPT, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    call = recorded_call()
    assert (call.status, call.http_status) == ("failed", 502)
    assert call.output_tokens > 0  # what was streamed before the failure is counted
