"""What both wire formats of the stand-in share: the threaded HTTP server, the plumbing of
one exchange (JSON replies, chunked SSE, dropping a connection), resolving a request's
behaviour (faults included), the reply text with stop sequences, and paced streaming.

Each wire format (``openai.py``, ``anthropic.py``) supplies its request parsing, its reply and
event shapes and its error body."""

import hashlib
import json
import math
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llm.standin import behaviour as rules
from llm.standin.behaviour import Behaviour
from llm.standin.schema import instance as schema_instance

FAULT_ERRORS = {
    429: ("rate_limit_error", "Rate limit reached; slow down."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded."),
    400: ("invalid_request_error", "Bad request (stand-in fault)."),
    401: ("authentication_error", "Invalid API key."),
}
RECORDED_REQUESTS = 100


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in received it, for tests to assert what a client sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass(slots=True)
class Reply:
    """The reply a prompt gets: its streamed pieces and why it ended."""

    pieces: list[str]
    truncated: bool  # cut by max_tokens
    stop_sequence: str | None = None  # the stop sequence that ended it, if any
    prompt_tokens: int = 0
    tool_calls: list[dict] = field(default_factory=list)  # [{"name", "arguments"}]
    output_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, handler_class, defaults: Behaviour) -> None:
        super().__init__(address, handler_class)
        self.defaults = defaults
        self.stopping = threading.Event()
        self.seen_prompts: set[str] = set()
        self.cached_prefixes: set[str] = set()  # digests of prompt prefixes (prompt caching)
        self.seen_lock = threading.Lock()
        self.received: deque[RecordedRequest] = deque(maxlen=RECORDED_REQUESTS)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a real bug: print it

    def first_time(self, digest: str) -> bool:
        with self.seen_lock:
            if digest in self.seen_prompts:
                return False
            self.seen_prompts.add(digest)
            return True


class Exchange(BaseHTTPRequestHandler):
    """One request and its answer. Routing lives in ``server.py``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each token leaves at once, as from a real provider
    server: StandinHTTPServer
    error: Callable  # the wire format's error writer: (status, kind, message, headers=None)

    def log_message(self, format: str, *args) -> None:  # quiet: tests and benches read stdout
        pass

    def json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop(self) -> None:
        """Cut the connection mid-stream, without the final chunk."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(2)

    def read_json(self) -> dict | None:
        """The JSON body (recorded for tests), or None when it is not a JSON object."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            body = None
        self.server.received.append(
            RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
        )
        return body

    def sleep(self, seconds: float) -> None:
        self.server.stopping.wait(seconds)

    def plan(self, body: dict, system: str, messages: list[dict]) -> Behaviour | None:
        """Resolve behaviour; answers the request itself (and returns None) for faults."""
        try:
            plan = rules.resolve(self.server.defaults, str(body.get("model", "")), self.headers)
        except rules.UnknownModel as exc:
            self.error(404, "not_found_error", f"The model `{exc}` does not exist.")
            return None
        if plan.flaky and self.server.first_time(rules.prompt_digest(system, messages)):
            plan = replace(plan, fault="429")
        if plan.fault == "hang":
            self.sleep(plan.hang_seconds)
            plan = replace(plan, fault=None)
        if plan.fault in ("429", "500", "529", "400", "401"):
            status = int(plan.fault)
            kind, message = FAULT_ERRORS[status]
            headers = {"Retry-After": plan.retry_after} if status == 429 else None
            self.error(status, kind, message, headers)
            return None
        return plan

    def whole_reply_fault(self, plan: Behaviour) -> bool:
        """The stream faults, for a request that asked for the whole reply at once: ``drop``
        closes the connection before any answer, ``errorevent`` answers 500."""
        if plan.fault == "drop":
            self.drop()
            return True
        if plan.fault == "errorevent":
            kind, message = FAULT_ERRORS[500]
            self.error(500, kind, message)
            return True
        return False

    def stream_pieces(self, pieces: list[str], plan: Behaviour, render, error) -> bool:
        """Send each piece at the planned pace; returns False when a fault ended the stream
        (dropped, or an error event sent) or the client went away."""
        interval = 1 / plan.tokens_per_second if plan.tokens_per_second > 0 else 0
        cut_at = max(len(pieces) // 2, 1) if plan.fault in ("drop", "errorevent") else None
        try:
            for index, piece in enumerate(pieces):
                if cut_at is not None and index == cut_at:
                    break
                if interval:
                    self.sleep(interval)
                self.chunk(render(piece))
            if plan.fault == "drop":
                self.drop()
                return False
            if plan.fault == "errorevent":
                self.chunk(error())
                self.end_stream()
                return False
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. it cancelled)
            return False
        return True


@dataclass(slots=True)
class Prompt:
    """A request as both wire formats boil it down: what the stand-in "model" reads."""

    system: str
    messages: list[dict]  # the turns as sent (for token counts and determinism)
    user_text: str  # the newest user text
    tool_results: list[str] | None = None  # set when the last turn answers tool calls
    images: int = 0  # images in the last user turn
    tools: list[tuple[str, dict]] = field(default_factory=list)  # (name, JSON schema)
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a tool's name
    parallel: bool = True
    output: dict | str | None = None  # a JSON schema, "json_object", or None for text


def choose_tools(prompt: Prompt) -> list[tuple[str, dict]]:
    """The tools a call goes to, as an agent model would: with ``auto``, a user turn gets a
    call (of every tool the user names, or else the first tool) and a tool result gets a text
    answer; ``required`` always calls; a named choice calls that tool; ``none`` never calls.
    Without parallel calls only the first is made."""
    if not prompt.tools or prompt.tool_choice == "none":
        return []
    if prompt.tool_choice not in ("auto", "required"):
        return [tool for tool in prompt.tools if tool[0] == prompt.tool_choice][:1]
    if prompt.tool_choice == "auto" and (prompt.tool_results is not None or not prompt.user_text):
        return []
    said = prompt.user_text.lower()
    named = [
        tool
        for tool in prompt.tools
        if tool[0].lower() in said or tool[0].lower().replace("_", " ") in said
    ]
    chosen = named or prompt.tools[:1]
    return chosen if prompt.parallel else chosen[:1]


def json_pieces(text: str) -> list[str]:
    """JSON text as tokens of about 4 characters, as a model streams it."""
    return [text[at : at + 4] for at in range(0, len(text), 4)]


def compose_reply(
    plan: Behaviour,
    prompt: Prompt,
    *,
    max_tokens: int,
    stop: list[str] | None = None,
) -> Reply:
    """The reply to a prompt: tool calls (arguments generated from each tool's schema), a
    structured-output JSON document, or ``plan.reply_tokens`` pieces of text; capped by
    ``max_tokens`` and cut before the first stop sequence."""
    tokens = rules.prompt_tokens(prompt.system, prompt.messages, prompt.tools)
    calls = choose_tools(prompt)
    if calls:
        tool_calls = [
            {"name": name, "arguments": schema_instance(schema, prompt.user_text)}
            for name, schema in calls
        ]
        output = sum(rules.count_tokens(json.dumps(c["arguments"])) + 8 for c in tool_calls)
        return Reply([], False, None, tokens, tool_calls, output)
    if prompt.output is not None:
        if isinstance(prompt.output, dict):
            document = schema_instance(prompt.output, prompt.user_text)
        else:  # json_object: any JSON object
            document = {"answer": prompt.user_text[:200]}
        pieces = json_pieces(json.dumps(document))
        reply = Reply(pieces[:max_tokens], len(pieces) > max_tokens, None, tokens)
        reply.output_tokens = len(reply.pieces)
        return reply
    opening = None
    if prompt.tool_results is not None:
        said = " ".join(prompt.tool_results)
        opening = f'The tool returned: "{said[:60]}".'
    elif prompt.images:
        plural = "image" if prompt.images == 1 else "images"
        opening = f'You said: "{prompt.user_text[:60]}". I see {prompt.images} {plural}.'
    pieces = rules.reply_tokens(
        prompt.system, prompt.messages, min(plan.reply_tokens, max_tokens), opening
    )
    reply = Reply(pieces, plan.reply_tokens > max_tokens, None, tokens)
    text = reply.text
    hits = [(text.find(s), s) for s in stop or () if s and s in text]
    if hits:
        cut, sequence = min(hits)
        kept: list[str] = []
        length = 0
        for piece in pieces:
            if length + len(piece) > cut:
                if cut > length:
                    kept.append(piece[: cut - length])
                break
            kept.append(piece)
            length += len(piece)
        reply = Reply(kept, False, sequence, tokens)
    reply.output_tokens = len(reply.pieces)
    return reply


def argument_fragments(arguments: str) -> list[str]:
    """A tool call's JSON arguments in several fragments (at least three when it is long
    enough), as providers stream them."""
    step = max(1, min(16, math.ceil(len(arguments) / 3)))
    return [arguments[at : at + step] for at in range(0, len(arguments), step)] or [""]


MIN_CACHEABLE_TOKENS = 1024  # both providers' smallest cacheable prefix


def cached_prefix(server: "StandinHTTPServer", model: str, segments: list[tuple[str, int]]):
    """Prompt caching over the prefixes of a prompt: ``segments`` are (serialized part, its
    tokens) in order. Returns (tokens read from the cache, tokens written to it): the longest
    prefix of at least 1,024 tokens seen before is read; the whole of ``segments`` is written
    when it is new and long enough. Every prefix is remembered for later requests."""
    digest = hashlib.sha256(model.encode())
    running = 0
    read = 0
    prefixes = []
    for text, tokens in segments:
        digest.update(text.encode())
        running += tokens
        prefixes.append((digest.hexdigest(), running))
    with server.seen_lock:
        for key, total in prefixes:
            if total >= MIN_CACHEABLE_TOKENS and key in server.cached_prefixes:
                read = total
        written = 0
        if prefixes and prefixes[-1][1] >= MIN_CACHEABLE_TOKENS:
            if prefixes[-1][0] not in server.cached_prefixes:
                written = prefixes[-1][1] - read
        server.cached_prefixes.update(key for key, _ in prefixes)
    return read, written
