"""The stand-in provider: a real HTTP server speaking the OpenAI Chat Completions and
Anthropic Messages wire formats (streaming included), so the real SDKs can be pointed at it by
base URL. Used by the tests, the benchmarks, and the run command when no API keys are set.

See ``behaviour.py`` for how a request chooses its reply, timing and faults."""

import json
import threading
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llm.standin import behaviour as rules
from llm.standin.behaviour import Behaviour

MODELS = ["standin-chat", "standin-slow", "standin-flaky"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, defaults: Behaviour) -> None:
        super().__init__(address, _Handler)
        self.defaults = defaults
        self.stopping = threading.Event()
        self.seen_prompts: set[str] = set()
        self.seen_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a real bug: print it

    def first_time(self, digest: str) -> bool:
        with self.seen_lock:
            if digest in self.seen_prompts:
                return False
            self.seen_prompts.add(digest)
            return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each token leaves at once, as from a real provider
    server: _Server

    def log_message(self, format: str, *args) -> None:  # quiet: tests and benches read stdout
        pass

    # --- plumbing -------------------------------------------------------------------------
    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection mid-stream, without the final chunk."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(2)

    def _read_json(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return None

    def _sleep(self, seconds: float) -> None:
        self.server.stopping.wait(seconds)

    # --- routes ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "parley"} for m in MODELS
            ]
            self._json(200, {"object": "list", "data": data})
        elif self.path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/chat/completions":
            self._openai()
        elif path == "/v1/messages":
            self._anthropic()
        else:
            self._json(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})

    def _plan(self, body: dict, system: str, messages: list[dict]) -> Behaviour | None:
        """Resolve behaviour; answers the request itself (and returns None) for faults."""
        try:
            plan = rules.resolve(self.server.defaults, str(body.get("model", "")), self.headers)
        except rules.UnknownModel as exc:
            self._error(404, "not_found_error", f"The model `{exc}` does not exist.")
            return None
        if plan.flaky and self.server.first_time(rules.prompt_digest(system, messages)):
            plan = replace(plan, fault="429")
        if plan.fault == "hang":
            self._sleep(plan.hang_seconds)
            plan = replace(plan, fault=None)
        if plan.fault in ("429", "500", "529", "400", "401"):
            status = int(plan.fault)
            kinds = {
                429: ("rate_limit_error", "Rate limit reached; slow down."),
                500: ("api_error", "Internal server error."),
                529: ("overloaded_error", "Overloaded."),
                400: ("invalid_request_error", "Bad request (stand-in fault)."),
                401: ("authentication_error", "Invalid API key."),
            }
            kind, message = kinds[status]
            headers = {"Retry-After": plan.retry_after} if status == 429 else None
            self._error(status, kind, message, headers)
            return None
        return plan

    # --- OpenAI ---------------------------------------------------------------------------
    def _openai(self) -> None:
        self._error = self._openai_error
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._openai_error(401, "invalid_request_error", "Missing bearer token.")
        body = self._read_json()
        if body is None or not isinstance(body.get("messages"), list):
            return self._openai_error(400, "invalid_request_error", "Invalid JSON body.")
        system = "\n".join(
            str(m.get("content", ""))
            for m in body["messages"]
            if m.get("role") in ("system", "developer")
        )
        messages = [m for m in body["messages"] if m.get("role") not in ("system", "developer")]
        plan = self._plan(body, system, messages)
        if plan is None:
            return None
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        pieces = rules.reply_tokens(system, messages, min(plan.reply_tokens, limit))
        finish = "length" if plan.reply_tokens > limit else "stop"
        usage = {
            "prompt_tokens": rules.prompt_tokens(system, messages),
            "completion_tokens": len(pieces),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = body["model"]

        if not body.get("stream"):
            self._sleep(plan.latency_ms / 1000)
            message = {"role": "assistant", "content": "".join(pieces), "refusal": None}
            return self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                    "usage": usage,
                },
            )

        def chunk(delta: dict, finish_reason: str | None = None, with_usage: bool = False) -> str:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": []
                if with_usage
                else [
                    {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
                ],
            }
            if with_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

        self._start_stream()
        self._sleep(plan.latency_ms / 1000)
        self._chunk(chunk({"role": "assistant", "content": ""}))
        self._stream_pieces(
            pieces,
            plan,
            lambda text: chunk({"content": text}),
            error=lambda: (
                'data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}\n\n'
            ),
        )
        if plan.fault in ("drop", "errorevent"):
            return None
        self._chunk(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._chunk(chunk({}, with_usage=True))
        self._chunk("data: [DONE]\n\n")
        self._end_stream()
        return None

    def _openai_error(
        self, status: int, kind: str, message: str, headers: dict | None = None
    ) -> None:
        code = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "model_not_found"}.get(
            status
        )
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._json(status, body, headers)

    # --- Anthropic ------------------------------------------------------------------------
    def _anthropic(self) -> None:
        self._error = self._anthropic_error
        # Current SDKs send the key as a bearer token; older ones as x-api-key.
        if not (
            self.headers.get("x-api-key")
            or self.headers.get("Authorization", "").startswith("Bearer ")
        ):
            return self._anthropic_error(
                401, "authentication_error", "x-api-key header is required."
            )
        if not self.headers.get("anthropic-version"):
            return self._anthropic_error(
                400, "invalid_request_error", "anthropic-version header is required."
            )
        body = self._read_json()
        if body is None or not isinstance(body.get("messages"), list) or not body.get("max_tokens"):
            return self._anthropic_error(
                400, "invalid_request_error", "messages and max_tokens are required."
            )
        system = body.get("system") or ""
        if isinstance(system, list):
            system = " ".join(block.get("text", "") for block in system)
        messages = body["messages"]
        plan = self._plan(body, system, messages)
        if plan is None:
            return None
        limit = int(body["max_tokens"])
        pieces = rules.reply_tokens(system, messages, min(plan.reply_tokens, limit))
        stop_reason = "max_tokens" if plan.reply_tokens > limit else "end_turn"
        input_tokens = rules.prompt_tokens(system, messages)
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        model = body["model"]

        if not body.get("stream"):
            self._sleep(plan.latency_ms / 1000)
            return self._json(
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(pieces)}],
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": len(pieces)},
                },
            )

        def event(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data}, separators=(',', ':'))}\n\n"

        self._start_stream()
        self._chunk(
            event(
                "message_start",
                {
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    }
                },
            )
        )
        self._chunk(
            event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
        )
        self._chunk(event("ping", {}))
        self._sleep(plan.latency_ms / 1000)
        self._stream_pieces(
            pieces,
            plan,
            lambda text: event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}
            ),
            error=lambda: event(
                "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
            ),
        )
        if plan.fault in ("drop", "errorevent"):
            return None
        self._chunk(event("content_block_stop", {"index": 0}))
        self._chunk(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": len(pieces)},
                },
            )
        )
        self._chunk(event("message_stop", {}))
        self._end_stream()
        return None

    def _anthropic_error(
        self, status: int, kind: str, message: str, headers: dict | None = None
    ) -> None:
        self._json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)

    # --- shared streaming -----------------------------------------------------------------
    def _stream_pieces(self, pieces: list[str], plan: Behaviour, render, error) -> None:
        interval = 1 / plan.tokens_per_second if plan.tokens_per_second > 0 else 0
        cut_at = max(len(pieces) // 2, 1) if plan.fault in ("drop", "errorevent") else None
        try:
            for index, piece in enumerate(pieces):
                if cut_at is not None and index == cut_at:
                    break
                if interval:
                    self._sleep(interval)
                self._chunk(render(piece))
            if plan.fault == "drop":
                self._drop()
            elif plan.fault == "errorevent":
                self._chunk(error())
                self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. it cancelled)


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
        self._server = _Server((host, port), defaults)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL: the Anthropic SDK's ``base_url``; the OpenAI SDK's is ``url + "/v1"``."""
        return f"http://{self._server.server_address[0]}:{self.port}"

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
