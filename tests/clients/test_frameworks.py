"""Agent and structured-output frameworks as their users write them: the OpenAI Agents SDK
(its default Responses model and its Chat Completions model), LangChain (``bind_tools``,
``with_structured_output``) and pydantic-ai (an agent with a tool), against a model of each
family."""

import asyncio

import openai
import pytest
from pydantic import BaseModel, Field

from llm.models import Conversation, Message
from tests.live import with_worker


class Forecast(BaseModel):
    """A weather forecast."""

    city: str = Field(description="The city")
    celsius: int = Field(ge=-50, le=60)
    summary: str


def lookups() -> tuple[list, object]:
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    return calls, get_weather


def agents_run(
    parley: str, key: str, model: str, *, responses: bool, chained: bool = False
) -> tuple[str, list]:
    """Run an agent with one function tool; ``chained``: the Responses model sends only the
    new items each turn, with ``previous_response_id`` (the SDK's auto_previous_response_id),
    instead of the whole history."""
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    calls, get_weather = lookups()
    client = openai.AsyncOpenAI(base_url=f"{parley}/v1", api_key=key, max_retries=0, timeout=60)
    model_class = OpenAIResponsesModel if responses else OpenAIChatCompletionsModel
    agent = Agent(
        name="forecaster",
        instructions="Use the tool to answer.",
        tools=[function_tool(get_weather)],
        model=model_class(model=model, openai_client=client),
    )
    result = asyncio.run(
        Runner.run(agent, "What is the weather in Paris?", auto_previous_response_id=chained)
    )
    return result.final_output, calls


def test_openai_agents_chat_completions_model(parley, api_key, model):
    output, calls = agents_run(parley, api_key.secret, model, responses=False)
    assert len(calls) == 1
    assert output.startswith('The tool returned: "sunny in')


@pytest.mark.parametrize("chained", [False, True], ids=["whole-history", "previous-response-id"])
def test_openai_agents_default_responses_model(parley, api_key, model, chained):
    """Its Responses model stores responses (``store`` is on by default): each is a reply
    written by a real worker."""
    output, calls = with_worker(
        lambda: agents_run(parley, api_key.secret, model, responses=True, chained=chained)
    )
    assert len(calls) == 1
    assert output.startswith('The tool returned: "sunny in')
    # The tool call and its result are stored turns of a conversation: one conversation for
    # the chain, one per call when the whole history is sent each time.
    assert Conversation.objects.count() == (1 if chained else 2)
    replies = Message.objects.filter(role="assistant").order_by("created_at")
    assert [p["type"] for p in replies.first().parts] == ["tool_call"]


def langchain_chat_other(parley: str, key: str, model: str, client: str):
    """The client library ``client`` ("openai" or "anthropic") talking to ``model``."""
    if client == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=model, base_url=f"{parley}/v1", api_key=key, max_retries=0)
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model=model, base_url=parley, api_key=key, max_retries=0)


def test_langchain_bind_tools(parley, api_key, model, client_family):
    from langchain_core.messages import HumanMessage, ToolMessage

    chat = langchain_chat_other(parley, api_key.secret, model, client_family)
    _, get_weather = lookups()
    bound = chat.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    first = bound.invoke([question])
    (call,) = first.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    answer = bound.invoke([question, first, ToolMessage("sunny in Paris", tool_call_id=call["id"])])
    assert 'The tool returned: "sunny in Paris"' in answer.text


def test_langchain_with_structured_output(parley, api_key, model, client_family):
    chat = langchain_chat_other(parley, api_key.secret, model, client_family)
    forecast = chat.with_structured_output(Forecast).invoke("Forecast for Paris")
    assert isinstance(forecast, Forecast) and -50 <= forecast.celsius <= 60


def test_pydantic_ai_agent_with_a_tool(parley, api_key, model, client_family):
    from pydantic_ai import Agent

    if client_family == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        llm = OpenAIChatModel(
            model, provider=OpenAIProvider(base_url=f"{parley}/v1", api_key=api_key.secret)
        )
    else:
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        llm = AnthropicModel(
            model, provider=AnthropicProvider(base_url=parley, api_key=api_key.secret)
        )
    calls, get_weather = lookups()
    agent = Agent(llm, instructions="Use the tool to answer.", tools=[get_weather])
    result = agent.run_sync("What is the weather in Paris?")
    assert len(calls) == 1
    assert 'The tool returned: "sunny in' in result.output
