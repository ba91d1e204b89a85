"""FROZEN COPY (git: layout, before okx/schemas.py) for bench/parse.py; not maintained.
Field readers of the WebSocket parser (okx/parse.py): one OKX field, checked, in our type.

Each raises `BadField` with the reason; the parser turns that into a counted ParseError value.
"""

from __future__ import annotations

from okx.errors import CollectorError
from okx.records import JsonObject, Level

RAW_LIMIT = 300  # how much of a bad frame to keep for the log line


class BadField(CollectorError):
    """One item of a frame is malformed. The parser catches it and returns a ParseError value
    with its message: it never leaves okx/parse.py."""


def clip(raw: str | bytes) -> str:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[:RAW_LIMIT]).decode("utf-8", errors="replace")
    return raw[:RAW_LIMIT]


def req_str(item: JsonObject, key: str) -> str:
    value = item.get(key)
    if type(value) is not str:
        if value is None:
            raise BadField(f"missing field {key!r}")
        raise BadField(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def opt_str(item: JsonObject, key: str, default: str) -> str:
    value = item.get(key, default)
    if type(value) is not str:
        raise BadField(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def req_ms(item: JsonObject, key: str) -> int:
    value = req_str(item, key)
    if not value.isdigit():
        raise BadField(f"field {key!r} must be integer milliseconds, got {value[:40]!r}")
    return int(value)


def ms_or_zero(item: JsonObject, key: str) -> int:
    """Times that OKX may send as "" (e.g. an order's fillTime before any fill)."""
    value = item.get(key, "")
    if value == "":
        return 0
    if type(value) is not str or not value.isdigit():
        raise BadField(f"field {key!r} must be integer milliseconds, got {str(value)[:40]!r}")
    return int(value)


def opt_int(item: JsonObject, key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if type(value) is not int:  # bool is not int here: type() is exact
        raise BadField(f"field {key!r} must be an integer, got {type(value).__name__}")
    return value


def levels_of(item: JsonObject, key: str) -> list[Level]:
    levels = item.get(key)
    if type(levels) is not list:
        raise BadField(f"field {key!r} must be a list of levels")
    for level in levels:
        if (
            type(level) is not list
            or len(level) < 2
            or type(level[0]) is not str
            or type(level[1]) is not str
        ):
            raise BadField(f"bad level in {key!r}: {str(level)[:60]}")
    return levels


def strings_only(item: JsonObject) -> JsonObject:
    """Private records: keep every field, but they must be strings (or lists/dicts OKX nests)."""
    for key, value in item.items():
        if value is not None and not isinstance(value, (str, list, dict)):
            raise BadField(f"field {key!r} must be a string, got {type(value).__name__}")
    return item
