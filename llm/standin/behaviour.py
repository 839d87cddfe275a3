"""What the stand-in does for a request: reply text, token counts, timing and faults.

Behaviour comes from the server's defaults, then the model name, then request headers (each
overriding the one before).

Model names start with ``standin``; the words after it, separated by ``-``, are directives:

    chat | echo        a normal reply (no-op words)
    slow               20 tokens per second and 200 ms to the first token
    tps<N>             N tokens per second (0 = as fast as possible)
    ttft<N>            N ms before the first token
    len<N>             a reply of N tokens (capped by the request's max_tokens)
    chaos<N>           N% of requests (chosen at random) get one of the faults 429, 500,
                       529, drop or hang
    flaky              the first request for each distinct prompt fails with 429 (Retry-After
                       1), the next one succeeds
    429 | 500 | 529 | 400 | 401 | hang | drop | errorevent
                       a fault: that status, a hang past any sane timeout, a connection
                       dropped mid-stream, or an error event mid-stream (asked for the whole
                       reply at once: the connection closed unanswered, or a 500)

e.g. ``standin-chat``, ``standin-slow-len200``, ``standin-429``. Any other model name is a 404.

Headers: ``X-Standin-Fault`` (a fault word), ``X-Standin-Latency-Ms``,
``X-Standin-Tokens-Per-Second``, ``X-Standin-Reply-Tokens``, ``X-Standin-Retry-After``.
"""

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, replace

FAULTS = {"429", "500", "529", "400", "401", "hang", "drop", "errorevent"}
CHAOS_FAULTS = ("429", "500", "529", "drop", "hang")  # what chaos<N> picks from
WORDS = (
    "the quick answer is that parley keeps every conversation safe while models stream "
    "their replies token by token so a team can see cost latency and usage at a glance "
    "with jobs queued retried and recovered when workers fail"
).split()


class UnknownModel(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Behaviour:
    latency_ms: int = 0
    tokens_per_second: float = 0.0
    reply_tokens: int = 40
    fault: str | None = None
    retry_after: str = "1"
    flaky: bool = False
    hang_seconds: float = 30.0


def resolve(defaults: Behaviour, model: str, headers) -> Behaviour:
    if not (model == "standin" or model.startswith("standin-")):
        raise UnknownModel(model)
    behaviour = defaults
    for word in model.split("-")[1:]:
        if word in FAULTS:
            behaviour = replace(behaviour, fault=word)
        elif match := re.fullmatch(r"chaos(\d+)", word):
            if random.random() * 100 < int(match.group(1)):
                behaviour = replace(behaviour, fault=random.choice(CHAOS_FAULTS))
        elif word == "flaky":
            behaviour = replace(behaviour, flaky=True)
        elif word == "slow":
            behaviour = replace(behaviour, tokens_per_second=20.0, latency_ms=200)
        elif match := re.fullmatch(r"(tps|ttft|len)(\d+)", word):
            field = {"tps": "tokens_per_second", "ttft": "latency_ms", "len": "reply_tokens"}
            value = int(match.group(2))
            behaviour = replace(behaviour, **{field[match.group(1)]: value})
    if fault := headers.get("X-Standin-Fault"):
        behaviour = replace(behaviour, fault=fault if fault in FAULTS else None)
    for header, field, cast in (
        ("X-Standin-Latency-Ms", "latency_ms", int),
        ("X-Standin-Tokens-Per-Second", "tokens_per_second", float),
        ("X-Standin-Reply-Tokens", "reply_tokens", int),
        ("X-Standin-Retry-After", "retry_after", str),
    ):
        if (value := headers.get(header)) is not None:
            behaviour = replace(behaviour, **{field: cast(value)})
    return behaviour


def count_tokens(text: str) -> int:
    """Roughly what a BPE tokenizer gives for English: about 4 characters a token."""
    return math.ceil(len(text) / 4) if text else 0


IMAGE_TOKENS = 85  # what OpenAI charges a low-detail image; close enough for a stand-in
IMAGE_PARTS = {"image", "image_url", "input_image"}


def content_text(content) -> str:
    """A message's text, whether a string or a list of content blocks (tool results' text
    included; images are counted apart)."""
    if isinstance(content, list):
        texts = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                texts.append(content_text(block.get("content")))
            elif isinstance(block.get("text"), str):
                texts.append(block["text"])
        return " ".join(texts)
    return str(content or "")


def text_only(content) -> str:
    """What the user wrote: the text parts of a turn, without tool results."""
    if isinstance(content, list):
        return " ".join(
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") in ("text", "input_text")
            and isinstance(block.get("text"), str)
        )
    return str(content or "")


def image_count(content) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for b in content if isinstance(b, dict) and b.get("type") in IMAGE_PARTS)


def message_tokens(message: dict) -> int:
    """One turn's tokens: its text, its images, the tool calls it makes, and 4 of framing."""
    content = message.get("content", "")
    total = count_tokens(content_text(content)) + 4 + IMAGE_TOKENS * image_count(content)
    for call in message.get("tool_calls") or ():  # OpenAI assistant turns
        total += count_tokens(str((call.get("function") or {}).get("arguments", "")))
    if isinstance(content, list):  # Anthropic assistant turns
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                total += count_tokens(json.dumps(block.get("input", {})))
    return total


def tools_tokens(tools: list | None) -> int:
    return count_tokens(json.dumps(tools, sort_keys=True)) if tools else 0


def prompt_tokens(system: str, messages: list[dict], tools: list | None = None) -> int:
    total = count_tokens(system) + (4 if system else 0) + tools_tokens(tools)
    for message in messages:
        total += message_tokens(message)
    return total + 3


def last_user_text(messages: list[dict]) -> str:
    """The newest user turn with text (a turn of tool results only is skipped)."""
    for message in reversed(messages):
        if message.get("role") == "user" and (text := text_only(message.get("content", ""))):
            return text
    return ""


def prompt_digest(system: str, messages: list[dict]) -> str:
    return hashlib.sha256(repr((system, messages)).encode()).hexdigest()


def reply_tokens(
    system: str, messages: list[dict], length: int, opening: str | None = None
) -> list[str]:
    """The reply as its streamed pieces (one token each), derived only from the prompt."""
    if opening is None:
        opening = f'You said: "{last_user_text(messages)[:60]}".'
    if system:
        opening += f" (Following a system prompt of {len(system)} characters.)"
    pieces = [word if i == 0 else " " + word for i, word in enumerate(opening.split())]
    rng = random.Random(prompt_digest(system, messages))
    while len(pieces) < length:
        pieces.append(" " + rng.choice(WORDS))
    return pieces[:length]
