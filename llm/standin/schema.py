"""A small deterministic JSON Schema instance generator: what the stand-in "model" fills a
tool's arguments and a structured-output reply with, so that the result validates against the
schema the client gave (types, required, enums and consts, arrays with item counts, nested
objects, ``$ref``/``$defs``, ``anyOf``/``oneOf``/``allOf``, numbers within their bounds,
string lengths and common formats).

The first free-text string filled in carries ``seed_text`` (the last user turn), as a real
model would put the user's query into a search tool's argument. ``pattern`` is not solved:
a string with a pattern gets the usual text."""

import hashlib
import math
from typing import Any

FORMATS = {
    "date": "2026-01-15",
    "date-time": "2026-01-15T09:30:00Z",
    "time": "09:30:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "6f1c2b9e-1d8a-4c7e-9b1a-2f3e4d5c6b7a",
    "duration": "P1D",
}
MAX_DEPTH = 12  # a recursive $ref stops here (optional parts are left out)


class _Generator:
    def __init__(self, root: dict, seed_text: str) -> None:
        self.root = root
        self.seed_text = seed_text
        self.seed_used = False

    def resolve(self, schema: dict) -> dict:
        """Follow ``$ref`` (local JSON pointers) and merge ``allOf`` into one schema."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            seen += 1
            target: Any = self.root
            for part in schema["$ref"].lstrip("#").strip("/").split("/"):
                if part:
                    target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        if isinstance(schema, dict) and schema.get("allOf"):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part)
                for key, value in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required":
                        merged["required"] = sorted({*merged.get("required", []), *value})
                    else:
                        merged.setdefault(key, value)
            schema = merged
        return schema if isinstance(schema, dict) else {}

    def value(self, schema: Any, name: str = "value", depth: int = 0) -> Any:
        if schema is True or schema is None:
            schema = {}
        if schema is False:
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [self.resolve(option) for option in schema[key]]
                # Prefer a real value over null (Optional[X] is anyOf [X, null]).
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                rest = {k: v for k, v in schema.items() if k != key}
                return self.value({**rest, **chosen}, name, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            kind = (
                "object"
                if "properties" in schema
                else "array"
                if "items" in schema or "prefixItems" in schema
                else "string"
            )
        maker = {
            "object": self.object,
            "array": self.array,
            "string": self.string,
            "integer": self.integer,
            "number": self.number,
            "boolean": lambda s, n, d: True,
            "null": lambda s, n, d: None,
        }.get(kind, self.string)
        return maker(schema, name, depth)

    def object(self, schema: dict, name: str, depth: int) -> dict:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        result = {}
        for key, sub in properties.items():
            if depth >= MAX_DEPTH and key not in required:
                continue
            result[key] = self.value(sub, key, depth + 1)
        minimum = schema.get("minProperties", 0)
        extra = schema.get("additionalProperties")
        index = 0
        while len(result) < minimum and extra is not False:
            result[f"key{index}"] = self.value(extra if isinstance(extra, dict) else {}, "key")
            index += 1
        return result

    def array(self, schema: dict, name: str, depth: int) -> list:
        prefix = schema.get("prefixItems") or (
            schema["items"] if isinstance(schema.get("items"), list) else []
        )
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        if not prefix and isinstance(schema.get("additionalItems"), dict):
            items = schema["additionalItems"]
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", math.inf)
        count = max(low, min(len(prefix) or 2, high))
        if depth >= MAX_DEPTH:
            count = max(low, len(prefix) if prefix else 0)
        result = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            item = self.value(sub, f"{name}{index}", depth + 1)
            if schema.get("uniqueItems") and item in result:
                item = self.distinct(sub, result, index)
            result.append(item)
        return result

    def distinct(self, schema: dict, taken: list, index: int) -> Any:
        """Another valid item for a ``uniqueItems`` array."""
        schema = self.resolve(schema)
        for option in schema.get("enum") or ():
            if option not in taken:
                return option
        kind = schema.get("type")
        if kind in ("integer", "number"):
            return self.integer({**schema, "_offset": index}, "n", 0)
        return f"{self.string(schema, 'item', 0)} {index}"

    def string(self, schema: dict, name: str, depth: int) -> str:
        if schema.get("format") in FORMATS:
            return FORMATS[schema["format"]]
        if not self.seed_used and self.seed_text:
            self.seed_used = True
            text = self.seed_text
        else:
            digest = hashlib.sha256(f"{name}:{self.seed_text}".encode()).hexdigest()[:6]
            text = f"{name} {digest}"
        low = schema.get("minLength", 0)
        high = schema.get("maxLength")
        if len(text) < low:
            text = text + "x" * (low - len(text))
        if high is not None:
            text = text[:high]
        return text

    def _bounds(self, schema: dict, integer: bool) -> tuple[float, float]:
        step = 1 if integer else 0.5
        low = schema.get("minimum", -math.inf)
        high = schema.get("maximum", math.inf)
        if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
            schema.get("exclusiveMinimum"), bool
        ):
            low = max(low, schema["exclusiveMinimum"] + step)
        elif schema.get("exclusiveMinimum") is True:  # draft 4 form
            low = low + step
        if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
            schema.get("exclusiveMaximum"), bool
        ):
            high = min(high, schema["exclusiveMaximum"] - step)
        elif schema.get("exclusiveMaximum") is True:
            high = high - step
        return low, high

    def integer(self, schema: dict, name: str, depth: int) -> int:
        low, high = self._bounds(schema, integer=True)
        low = math.ceil(low) if low != -math.inf else None
        high = math.floor(high) if high != math.inf else None
        target = 3 + schema.get("_offset", 0)
        if low is not None and high is not None:
            value = min(low + target, high) if high >= low else low
        elif low is not None:
            value = low + target
        elif high is not None:
            value = min(high, target)
        else:
            value = target
        multiple = schema.get("multipleOf")
        if multiple:
            up = math.ceil(value / multiple) * multiple
            down = math.floor(value / multiple) * multiple
            value = up if high is None or up <= high else down
            value = int(value) if float(value).is_integer() else value
        return int(value)

    def number(self, schema: dict, name: str, depth: int) -> float | int:
        if schema.get("multipleOf"):
            return self.integer(schema, name, depth)
        low, high = self._bounds(schema, integer=False)
        if low != -math.inf and high != math.inf:
            return (low + high) / 2
        if low != -math.inf:
            return low + 1.5
        if high != math.inf:
            return min(high - 1.5, 1.5)
        return 1.5


def instance(schema: dict | None, seed_text: str = "") -> Any:
    """A value that validates against ``schema``, the same for the same schema and text."""
    schema = schema if isinstance(schema, dict) else {}
    return _Generator(schema, seed_text).value(schema, "value")
