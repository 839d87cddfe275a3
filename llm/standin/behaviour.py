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


def content_text(content) -> str:
    """A message's text, whether a string or a list of content blocks."""
    if isinstance(content, list):
        return " ".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content or "")


def prompt_tokens(system: str, messages: list[dict]) -> int:
    total = count_tokens(system) + (4 if system else 0)
    for message in messages:
        total += count_tokens(content_text(message.get("content", ""))) + 4
    return total + 3


def last_user_text(messages: list[dict]) -> str:
    return next(
        (content_text(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )


def prompt_digest(system: str, messages: list[dict]) -> str:
    return hashlib.sha256(repr((system, messages)).encode()).hexdigest()


def reply_tokens(system: str, messages: list[dict], length: int) -> list[str]:
    """The reply as its streamed pieces (one token each), derived only from the prompt."""
    last_user = last_user_text(messages)
    opening = f'You said: "{last_user[:60]}".'
    if system:
        opening += f" (Following a system prompt of {len(system)} characters.)"
    pieces = [word if i == 0 else " " + word for i, word in enumerate(opening.split())]
    rng = random.Random(prompt_digest(system, messages))
    while len(pieces) < length:
        pieces.append(" " + rng.choice(WORDS))
    return pieces[:length]
