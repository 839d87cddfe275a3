"""Provider calls other than chat: OpenAI-format embeddings and Anthropic's token counting,
through the official SDKs' async clients (cached per event loop and configuration, as the chat
providers' are), with failures translated into the same ``ProviderError`` classes."""

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator

import anthropic
import openai

from llm.providers.base import ProviderError, ProviderTimeout, error_for_status
from llm.providers.base import TransientProviderError as Transient

CONNECT_TIMEOUT = 5.0
_lock = threading.Lock()
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def _client(kind: str, api_key: str, base_url: str | None, timeout: float):
    loop = asyncio.get_running_loop()
    key = (kind, api_key, base_url, timeout)
    with _lock:
        per_loop = _clients.setdefault(loop, {})
        if key not in per_loop:
            sdk = openai if kind == "openai" else anthropic
            client_class = openai.AsyncOpenAI if kind == "openai" else anthropic.AsyncAnthropic
            per_loop[key] = client_class(
                api_key=api_key,
                base_url=base_url,
                timeout=sdk.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
                max_retries=0,
            )
        return per_loop[key]


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return getattr(exc, "message", str(exc))


@contextlib.contextmanager
def _translated(sdk) -> Iterator[None]:
    try:
        yield
    except sdk.APIStatusError as exc:
        raise error_for_status(exc.status_code, _message(exc), exc.response.headers) from None
    except sdk.APITimeoutError:
        raise ProviderTimeout("The provider did not answer in time.") from None
    except sdk.APIConnectionError:
        raise Transient("Could not connect to the provider.") from None


async def aembed(*, api_key: str, base_url: str | None, timeout: float, body: dict) -> dict:
    """``POST /embeddings`` on an OpenAI-format provider with ``body`` as the client sent it
    (model already the provider's); the provider's JSON answer. Raises ``ProviderError``."""
    client = _client("openai", api_key, base_url, timeout)
    with _translated(openai):
        answer = await client.post("/embeddings", body=body, cast_to=object)
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        raise ProviderError("The provider's embeddings answer has no data.")
    return answer


async def acount_tokens(*, api_key: str, base_url: str | None, timeout: float, body: dict) -> int:
    """Anthropic's ``POST /v1/messages/count_tokens`` for ``body``; the input tokens."""
    client = _client("anthropic", api_key, base_url, timeout)
    with _translated(anthropic):
        answer = await client.post("/v1/messages/count_tokens", body=body, cast_to=object)
    tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, int):
        raise ProviderError("The provider's token count has no input_tokens.")
    return tokens
