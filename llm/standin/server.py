"""The stand-in provider: a real HTTP server speaking the OpenAI Chat Completions and
Embeddings and Anthropic Messages (and token counting) wire formats (streaming included), so the real SDKs can be pointed at it by
base URL. Used by the tests, the benchmarks, and the run command when no API keys are set.

Routes are here; each wire format lives in its own module (``openai.py``, ``anthropic.py``)
over the shared ``core.py``. See ``behaviour.py`` for how a request chooses its reply, timing
and faults."""

import threading

from llm.standin import anthropic, openai
from llm.standin.behaviour import Behaviour
from llm.standin.core import Exchange, RecordedRequest, StandinHTTPServer

MODELS = ["standin-chat", "standin-slow", "standin-flaky", "standin-embed"]
POST_ROUTES = {
    "/v1/chat/completions": openai.chat_completions,
    "/v1/embeddings": openai.embeddings,
    "/v1/messages": anthropic.messages,
    "/v1/messages/count_tokens": anthropic.count_tokens,
}


class _Handler(Exchange):
    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "parley"} for m in MODELS
            ]
            self.json(200, {"object": "list", "data": data})
        elif path == "/healthz":
            self.json(200, {"status": "ok"})
        else:
            openai.error(self, 404, "invalid_request_error", "Not found")

    def do_POST(self) -> None:
        route = POST_ROUTES.get(self.path.split("?")[0].rstrip("/"))
        if route is None:
            return openai.error(self, 404, "invalid_request_error", "Not found")
        return route(self)


class StandinServer:
    """Runs the stand-in in a background thread: ``StandinServer().start()``; ``.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: int = 0,
        tokens_per_second: float = 0.0,
        reply_tokens: int = 40,
        hang_seconds: float = 30.0,
    ) -> None:
        defaults = Behaviour(
            latency_ms=latency_ms,
            tokens_per_second=tokens_per_second,
            reply_tokens=reply_tokens,
            hang_seconds=hang_seconds,
        )
        self._server = StandinHTTPServer((host, port), _Handler, defaults)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL: the Anthropic SDK's ``base_url``; the OpenAI SDK's is ``url + "/v1"``."""
        return f"http://{self._server.server_address[0]}:{self.port}"

    @property
    def received(self) -> list[RecordedRequest]:
        """The last requests received (oldest first, at most 100), bodies parsed."""
        return list(self._server.received)

    @property
    def last_request(self) -> RecordedRequest | None:
        return self._server.received[-1] if self._server.received else None

    def start(self) -> "StandinServer":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
