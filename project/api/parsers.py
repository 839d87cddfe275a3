"""The API's request parser, and the JSON reading every API shares (``/api/`` and ``/v1/``)."""

import json
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# A lone surrogate can only arrive as a JSON escape (UTF-8 cannot encode one, and the decoder
# refuses the bytes), so a body with no ``\uD8..``-``\uDF..`` escape needs no deeper check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class NotUnicodeText(ValueError):
    """A JSON string holds a lone surrogate: not text any database, SDK or log can carry."""


def json_text_check(raw: bytes, value: Any) -> None:
    """Raise ``NotUnicodeText`` when ``value`` (parsed from ``raw``) holds a lone surrogate in
    any string, key or value, however deep. Linear and in C: one regex scan of the raw body,
    and only when that finds an escape, one re-encoding of the parsed value."""
    if not _SURROGATE_ESCAPE.search(raw):
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotUnicodeText(
            "The request body holds text that is not valid Unicode (a lone surrogate escape "
            "such as \\ud800)."
        ) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number.")


def json_loads_text(raw: bytes) -> Any:
    """Strict ``json.loads``: ``ValueError`` for bad JSON, ``NaN``/``Infinity``, a body nested
    too deeply (``RecursionError``) and text that is not valid Unicode alike."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply.") from None
    json_text_check(raw, value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's, refusing as malformed JSON (a 400 ``parse_error``, never a 500) both a body
    nested too deeply for Python's parser (100,000 ``[`` well under the size limit) and text
    that is not valid Unicode (a lone surrogate, which would otherwise fail deep inside the
    database driver or a provider SDK)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw:
            raise ParseError("JSON parse error - the body is empty.")
        try:
            return json_loads_text(raw)
        except NotUnicodeText as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except ValueError as exc:
            if str(exc) == "JSON nested too deeply.":
                raise ParseError("JSON parse error - nested too deeply.") from None
            raise ParseError(f"JSON parse error - {exc}") from None
