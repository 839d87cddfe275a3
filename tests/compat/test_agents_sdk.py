"""The OpenAI Agents SDK against a live Parley: its default Responses model and its Chat
Completions model, an agent with a function tool (plain and streamed) and one with a
structured ``output_type``, for a model of each family. Runs where ``openai-agents`` is
installed (requirements/dev.txt pins it with the other client libraries)."""

import asyncio

import pydantic
import pytest

agents = pytest.importorskip("agents")
from openai import AsyncOpenAI  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)
agents.set_tracing_disabled(True)
MODELS = {"responses": agents.OpenAIResponsesModel, "chat": agents.OpenAIChatCompletionsModel}


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Forecast(pydantic.BaseModel):
    city: str
    summary: str


@pytest.mark.parametrize("slug", ["gpt-standin", "claude-standin"])
@pytest.mark.parametrize("api", MODELS)
def test_an_agent_with_a_tool_and_one_with_structured_output(parley, api_key, slug, api):
    async def run() -> tuple:
        client = AsyncOpenAI(base_url=f"{parley}/v1", api_key=api_key.secret, max_retries=0)
        model = MODELS[api](model=slug, openai_client=client)
        weather = agents.Agent(
            name="weather", instructions="Use tools.", tools=[get_weather], model=model
        )
        answered = await agents.Runner.run(weather, "What is the weather in Oslo?")
        streamed = agents.Runner.run_streamed(weather, "What is the weather in Oslo?")
        async for _ in streamed.stream_events():
            pass
        structured = agents.Agent(name="forecast", model=model, output_type=Forecast)
        forecast = await agents.Runner.run(structured, "Weather in Oslo?")
        return answered.final_output, streamed.final_output, forecast.final_output

    answered, streamed, forecast = asyncio.run(run())
    # The stand-in answers a tool result with what the tool returned: the loop went round.
    assert answered.startswith('The tool returned: "sunny in')
    assert streamed.startswith('The tool returned: "sunny in')
    assert isinstance(forecast, Forecast)
