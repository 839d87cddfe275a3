"""LangChain (``bind_tools``, ``with_structured_output``) and pydantic-ai (an agent with a
tool and a structured output) against a live Parley, through each family's chat class, for a
model of each family. Runs where the libraries are installed (requirements/dev.txt)."""

import asyncio

import pydantic
import pytest

langchain_openai = pytest.importorskip("langchain_openai")
langchain_anthropic = pytest.importorskip("langchain_anthropic")
pydantic_ai = pytest.importorskip("pydantic_ai")

pytestmark = pytest.mark.django_db(transaction=True)
SLUGS = ["gpt-standin", "claude-standin"]


class Forecast(pydantic.BaseModel):
    city: str
    summary: str


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def chat_model(client: str, slug: str, parley: str, key: str):
    if client == "openai":
        return langchain_openai.ChatOpenAI(
            model=slug, base_url=f"{parley}/v1", api_key=key, max_retries=0
        )
    return langchain_anthropic.ChatAnthropic(
        model=slug, base_url=parley, api_key=key, max_retries=0, max_tokens=1000
    )


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_langchain_bind_tools_and_structured_output(parley, api_key, client, slug):
    model = chat_model(client, slug, parley, api_key.secret)
    reply = model.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Oslo?")
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    chunks = list(model.bind_tools([get_weather], tool_choice="get_weather").stream("Oslo?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls[0]["name"] == "get_weather"
    forecast = model.with_structured_output(Forecast).invoke("Weather in Oslo?")
    assert isinstance(forecast, Forecast)


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_pydantic_ai_agent_with_a_tool(parley, api_key, client, slug):
    from pydantic_ai import Agent

    if client == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        model = OpenAIChatModel(
            slug, provider=OpenAIProvider(base_url=f"{parley}/v1", api_key=api_key.secret)
        )
    else:
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        model = AnthropicModel(
            slug, provider=AnthropicProvider(base_url=parley, api_key=api_key.secret)
        )
    settings = {"max_tokens": 1000}  # the test catalog's models allow 1,024
    agent = Agent(model, instructions="Use tools.", tools=[get_weather], model_settings=settings)
    result = asyncio.run(agent.run("What is the weather in Oslo?"))
    assert result.output.startswith('The tool returned: "sunny in')
    structured = Agent(model, output_type=Forecast, model_settings=settings)
    assert isinstance(asyncio.run(structured.run("Weather in Oslo?")).output, Forecast)
