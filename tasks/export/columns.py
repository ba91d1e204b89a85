"""The columns of an export and the pure conversion of MongoDB documents into Arrow batches.

One fixed column list per kind, so that every row group of a Parquet file and every chunk of a
CSV file has the same schema however the documents vary:

    _id                  the document's natural key, as stored
    OKX fields           from okx/schemas.py (the same tables the parser validates against):
      decimals           the exact string as OKX sent it, plus `<name>_f64` (float64) beside it;
                         "" (OKX's "not applicable") stays "" with a null float
      time fields        the kind's millisecond fields (trades `ts`, orders `uTime`/`cTime`)
                         as int64 ms; other ms fields (fillTime) stay OKX's strings
      ids, enums, text   strings, as stored
      JSON integers      int64 (trades `seqId`); booleans bool; arrays/objects as JSON text
    validated, n, ...    the fields the workers add (kind-specific)
    dt                   the document's BSON datetime as timestamp[ms, UTC]
    extra                every other field of the document as one JSON object (null if none):
                         OKX adds fields over time, and an export never drops one

A field a document lacks (or holds as null) is null. A document whose value does not fit its
column (a price stored as a number, a time that is no integer) is rejected as a whole row:
`to_batch` returns it with the reason, and the caller counts and logs it. docs/export.md says
why decimals are strings beside floats and not decimal128.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from okx.schema_rules import BOOL, DEC, DEC_E, JINT, LIST, MS, MS_E, OBJ, SDEC, SDEC_E, Schema
from okx.schemas import FILL, ORDER, TRADE

FLOAT_SUFFIX = "_f64"
EXTRA = "extra"

# column types (what a value becomes)
STR, DECIMAL, MILLIS, INT, FLAG, JSON, DATETIME = "str", "dec", "ms", "int", "bool", "json", "dt"

_ARROW = {
    STR: pa.string(),
    DECIMAL: pa.string(),
    MILLIS: pa.int64(),
    INT: pa.int64(),
    FLAG: pa.bool_(),
    JSON: pa.string(),
    DATETIME: pa.timestamp("ms", tz="UTC"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def _from_schema(schema: Schema, time_fields: tuple[str, ...]) -> list[Column]:
    cols = []
    for name, rule, _required in schema:
        if rule in (DEC, SDEC, DEC_E, SDEC_E):
            cols.append(Column(name, DECIMAL))
        elif rule in (MS, MS_E) and name in time_fields:
            cols.append(Column(name, MILLIS))
        elif rule == JINT:
            cols.append(Column(name, INT))
        elif rule == BOOL:
            cols.append(Column(name, FLAG))
        elif rule in (LIST, OBJ):
            cols.append(Column(name, JSON))
        else:
            cols.append(Column(name, STR))
    return cols


_ID = Column("_id", STR)
_DT = Column("dt", DATETIME)
_CANDLE = [
    Column("instId", STR),
    Column("bar", STR),
    Column("ts", MILLIS),
    *(Column(n, DECIMAL) for n in ("o", "h", "l", "c", "vol", "volCcy", "volCcyQuote")),
    Column("confirm", STR),
    Column("source", STR),  # absent on OKX's own candles (= "okx")
    Column("n", INT),  # candles from trades: trade count
    Column("complete", FLAG),
    Column("final", FLAG),
]
_VWAP = [
    Column("instId", STR),
    Column("ts", MILLIS),
    Column("vwap", DECIMAL),
    Column("window_ms", INT),
    Column("n", INT),
    Column("validated", FLAG),
]

COLUMNS: dict[str, tuple[Column, ...]] = {
    "trades": (
        _ID,
        *_from_schema(TRADE, ("ts",)),
        Column("channel", STR),
        Column("validated", FLAG),
        _DT,
    ),
    "orders": (_ID, *_from_schema(ORDER, ("uTime", "cTime")), _DT),
    "fills": (_ID, *_from_schema(FILL, ("ts",)), Column("source", STR), _DT),
    "candles": (_ID, *_CANDLE, _DT),
    "vwap": (_ID, *_VWAP, _DT),
}


def arrow_schema(kind: str) -> pa.Schema:
    """The file's schema: each column, a `_f64` float beside each decimal, `extra` last."""
    fields = []
    for col in COLUMNS[kind]:
        fields.append(pa.field(col.name, _ARROW[col.type]))
        if col.type == DECIMAL:
            fields.append(pa.field(col.name + FLOAT_SUFFIX, pa.float64()))
    fields.append(pa.field(EXTRA, pa.string()))
    return pa.schema(fields)


# ----- converters: a stored value -> the column's value, or ValueError -------------------------


def _str(v: Any) -> str | None:
    if v is None or type(v) is str:
        return v
    raise ValueError(f"expected a string, got {type(v).__name__}")


def _millis(v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is str and v.isascii() and v.isdigit():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):  # bson.Int64 too
        return int(v)
    raise ValueError(f"expected milliseconds, got {v!r:.40}")


def _int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):  # pymongo decodes int64 as bson.Int64
        return int(v)
    raise ValueError(f"expected an integer, got {v!r:.40}")


def _flag(v: Any) -> bool | None:
    if v is None or type(v) is bool:
        return v
    raise ValueError(f"expected a boolean, got {v!r:.40}")


def _json(v: Any) -> str | None:
    if v is None:
        return None
    if type(v) in (list, dict):
        return _dumps(v)
    raise ValueError(f"expected an array or object, got {type(v).__name__}")


def _datetime(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):  # pymongo hands back naive UTC unless tz_aware
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    raise ValueError(f"expected a BSON datetime, got {type(v).__name__}")


def _float(s: str | None) -> float | None:
    return None if not s else float(s)


def _dumps(v: Any) -> str:
    # naive datetimes are BSON's UTC; anything else JSON cannot hold (ObjectId, bytes) as text
    opts = orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(v, option=opts, default=str).decode()


_CONVERT: dict[str, Callable[[Any], Any]] = {
    STR: _str,
    DECIMAL: _str,
    MILLIS: _millis,
    INT: _int,
    FLAG: _flag,
    JSON: _json,
    DATETIME: _datetime,
}


def _extra(doc: dict[str, Any], known: frozenset[str]) -> str | None:
    rest = {k: v for k, v in doc.items() if k not in known}
    return _dumps(rest) if rest else None


Rejected = tuple[dict[str, Any], str]  # (document, reason)


def to_batch(kind: str, docs: Sequence[dict[str, Any]]) -> tuple[pa.RecordBatch, list[Rejected]]:
    """The Arrow batch of `docs` (in their order) and the documents rejected, with the reason.

    Column by column first (one comprehension per column: the fast path); if any value does not
    fit, the chunk is done again row by row so that only the offending documents are left out."""
    cols = COLUMNS[kind]
    try:
        return _columns(kind, cols, docs), []
    except (ValueError, TypeError, OverflowError):
        pass
    good: list[dict[str, Any]] = []
    bad: list[Rejected] = []
    for doc in docs:
        try:
            _columns(kind, cols, (doc,))
        except (ValueError, TypeError, OverflowError) as exc:
            bad.append((doc, str(exc)))
        else:
            good.append(doc)
    return _columns(kind, cols, good), bad


def _columns(kind: str, cols: tuple[Column, ...], docs: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    schema = arrow_schema(kind)
    arrays: list[pa.Array] = []
    for col in cols:
        convert = _CONVERT[col.type]
        name = col.name
        try:
            values = [convert(d.get(name)) for d in docs]
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        arrays.append(pa.array(values, type=_ARROW[col.type]))
        if col.type == DECIMAL:
            try:
                arrays.append(pa.array([_float(s) for s in values], type=pa.float64()))
            except ValueError:
                raise ValueError(f"{name}: not a decimal") from None
    known = frozenset(c.name for c in cols)
    arrays.append(pa.array([_extra(d, known) for d in docs], type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
