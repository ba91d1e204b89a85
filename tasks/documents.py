"""Pure mapping from record payloads (core.contract) to MongoDB documents and Redis state.

No I/O here. Every function takes record dicts as the feeder sends them (OKX field names, OKX
string values) and returns plain values, so the writers only move bytes.

* `split_records` checks the fields each kind needs; a record without them cannot get a natural
  key and is returned as bad (the ingest task dead-letters it; the good ones are written).
* `mongo_docs` builds history documents with a deterministic `_id` from the natural key and a
  BSON datetime `dt`, deduplicated within the batch.
* `state_*` build the Redis hashes of the original design and their version tuples.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from core.errors import BadRecord

Record = dict[str, Any]

# kind -> fields a record must carry (natural key, version, and the original design's fields
# that have no sensible default)
REQUIRED: dict[str, tuple[str, ...]] = {
    "orders": ("instType", "instId", "ordId", "state", "uTime", "cTime"),
    "balances": ("ccy", "cashBal", "uTime"),
    "positions": ("posId", "instId", "instType", "pos", "uTime"),
    "trades": ("instId", "tradeId", "px", "sz", "side", "ts"),
    "tickers": ("instId", "ts"),
    "candles": ("instId", "bar", "ts", "confirm"),
    "books": ("instId", "channel", "ts", "asks", "bids"),
    # REST only (backfill): OKX fill rows, history without Redis state
    "fills": ("instId", "tradeId", "ordId", "billId", "ts"),
}
# kind -> millisecond time fields (strings of digits; OKX sends them as strings)
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "orders": ("uTime", "cTime"),
    "balances": ("uTime",),
    "positions": ("uTime",),
    "trades": ("ts",),
    "tickers": ("ts",),
    "candles": ("ts",),
    "books": ("ts",),
    "fills": ("ts",),
}
# the field whose time goes into `dt`
DT_FIELD = {"orders": "uTime", "balances": "uTime", "positions": "uTime"}
# original design's fields that must exist in the stored document even when OKX left them out
DEFAULTED: dict[str, tuple[str, ...]] = {"orders": ("tradeId",), "positions": ("tradeId", "ccy")}


# 14 digits of milliseconds reach the year 5138; more would overflow `to_datetime` (datetime
# stops at 9999), so such a time is a bad record, never an exception in the writer.
MAX_MS = 99_999_999_999_999


def _is_ms(value: str) -> bool:
    """ASCII digits only (str.isdigit() alone also takes "²" and Arabic-Indic digits, which
    int() then converts or rejects), within MAX_MS."""
    return value.isdigit() and value.isascii() and len(value) <= 14


def _ms_string(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value <= MAX_MS else None
    if isinstance(value, str) and _is_ms(value):
        return value
    return None


def check_record(kind: str, rec: Record) -> Record:
    """Return `rec` with its time fields as digit strings; raise BadRecord if it cannot be stored.
    (The record itself is returned when nothing needs normalising: no copy on the hot path.)"""
    missing = [f for f in REQUIRED[kind] if rec.get(f) in (None, "")]
    if missing:
        raise BadRecord(f"{kind} record without {', '.join(missing)}")
    out = rec
    for name in TIME_FIELDS[kind]:
        value = rec.get(name)
        if isinstance(value, str) and _is_ms(value):
            continue
        ms = _ms_string(value)
        if ms is None:
            raise BadRecord(f"{kind} record: {name}={value!r} is not milliseconds")
        if out is rec:
            out = dict(rec)
        out[name] = ms
    if kind == "books":
        if not isinstance(rec["asks"], list) or not isinstance(rec["bids"], list):
            raise BadRecord("books record: asks and bids must be lists of levels")
        seq = rec.get("seqId")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise BadRecord(f"books record: seqId={seq!r} is not an integer")
    for name in DEFAULTED.get(kind, ()):
        if name not in out:
            if out is rec:
                out = dict(rec)
            out[name] = ""
    return out


def split_records(
    kind: str, records: Iterable[Record]
) -> tuple[list[Record], list[tuple[Record, str]]]:
    """(records that can be stored, [(bad record, reason)])."""
    good: list[Record] = []
    bad: list[tuple[Record, str]] = []
    for rec in records:
        try:
            good.append(check_record(kind, rec))
        except BadRecord as exc:
            bad.append((rec, str(exc)))
    return good, bad


def to_datetime(ms: str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


# ----- MongoDB ------------------------------------------------------------------------------------


def natural_id(kind: str, rec: Record, *, books_sample_ms: int = 0) -> str:
    """The deterministic `_id`: the natural key of architecture.md joined with ':'."""
    if kind == "orders":
        return f"{rec['ordId']}:{rec['uTime']}:{rec['state']}"
    if kind == "balances":
        return f"{rec['ccy']}:{rec['uTime']}"
    if kind == "positions":
        return f"{rec['posId']}:{rec['uTime']}"
    if kind == "trades":
        return f"{rec['instId']}:{rec['tradeId']}"
    if kind == "tickers":
        return f"{rec['instId']}:{rec['ts']}"
    if kind == "fills":
        return f"{rec['billId']}"
    if kind == "candles":
        return f"{rec['instId']}:{rec['bar']}:{rec['ts']}"
    if kind == "books":
        base = f"{rec['instId']}:{rec['channel']}"
        if rec.get("full"):
            return f"{base}:full:{rec['ts']}"
        if books_sample_ms > 0:  # one sample per window: the window start is the key
            ts = int(rec["ts"])
            return f"{base}:w{ts - ts % books_sample_ms}"
        seq = rec.get("seqId")
        return f"{base}:s{seq}" if seq is not None else f"{base}:t{rec['ts']}"
    raise ValueError(f"unknown kind {kind!r}")


def mongo_doc(
    kind: str, rec: Record, *, validated: bool = False, books_sample_ms: int = 0
) -> Record | None:
    """The history document for a checked record, or None when it is not history (forming candle)."""
    if kind == "candles" and rec.get("confirm") != "1":
        return None  # a forming bar is current state (Redis), never final history
    doc = dict(rec)
    doc["_id"] = natural_id(kind, rec, books_sample_ms=books_sample_ms)
    doc["dt"] = to_datetime(rec[DT_FIELD.get(kind, "ts")])
    if kind == "trades":
        doc["validated"] = validated
    return doc


def mongo_docs(
    kind: str, records: Iterable[Record], *, validated: bool = False, books_sample_ms: int = 0
) -> list[Record]:
    """History documents for checked records, first one per `_id` (the rest would be duplicates)."""
    out: dict[str, Record] = {}
    for rec in records:
        if kind == "candles" and rec.get("confirm") != "1":
            continue
        _id = natural_id(kind, rec, books_sample_ms=books_sample_ms)
        if _id in out:
            continue
        doc = dict(rec)
        doc["_id"] = _id
        doc["dt"] = to_datetime(rec[DT_FIELD.get(kind, "ts")])
        if kind == "trades":
            doc["validated"] = validated
        out[_id] = doc
    return list(out.values())


# ----- Redis state ----------------------------------------------------------------------------------

ORDER_FIELDS = ("instType", "instId", "ordId", "tradeId", "cTime", "state", "uTime")
BALANCE_FIELDS = ("ccy", "cashBal", "uTime")
POSITION_FIELDS = ("posId", "tradeId", "instId", "instType", "pos", "ccy", "uTime")
TOP_LEVELS = 5

Version = tuple[tuple[str, float], ...]  # ((field name, value), ...) compared left to right


def _strings(rec: Record, names: Iterable[str]) -> dict[str, str]:
    return {n: "" if rec.get(n) is None else str(rec.get(n)) for n in names}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def order_hash(rec: Record) -> dict[str, str]:
    return _strings(rec, ORDER_FIELDS)


def balance_key(rec: Record) -> tuple[str, Version, Record]:
    return rec["ccy"], (("uTime", _num(rec["uTime"])),), rec


def balance_fields(rec: Record) -> dict[str, str]:
    return _strings(rec, BALANCE_FIELDS)


def position_key(rec: Record) -> tuple[str, Version, Record]:
    return rec["posId"], (("uTime", _num(rec["uTime"])),), rec


def position_fields(rec: Record) -> dict[str, str]:
    return _strings(rec, POSITION_FIELDS)


def ticker_key(rec: Record) -> tuple[str, Version, Record]:
    return rec["instId"], (("ts", _num(rec["ts"])),), rec


def flat_fields(rec: Record) -> dict[str, str]:
    """Every scalar field as a string (ticker, candle)."""
    return {
        k: "" if v is None else str(v) for k, v in rec.items() if not isinstance(v, (list, dict))
    }


def candle_key(rec: Record) -> tuple[str, Version, Record]:
    """Current candle per instId+bar: a newer bar wins; in one bar, confirmed beats forming and
    more volume beats less (volume only grows while a bar forms)."""
    version = (
        ("ts", _num(rec["ts"])),
        ("confirm", _num(rec.get("confirm"))),
        ("vol", _num(rec.get("vol"))),
    )
    return f"{rec['instId']}\x00{rec['bar']}", version, rec


def book_key(rec: Record) -> tuple[str, Version, Record]:
    seq = rec.get("seqId")
    return (
        rec["instId"],
        (("ts", _num(rec["ts"])), ("seqId", float(seq) if seq is not None else -1.0)),
        rec,
    )


def book_fields(rec: Record) -> tuple[dict[str, str], dict[str, str]]:
    """(books5 hash, top-of-book hash) for one books record."""
    seq = rec.get("seqId")
    asks, bids = rec["asks"][:TOP_LEVELS], rec["bids"][:TOP_LEVELS]
    common = {
        "ts": rec["ts"],
        "seqId": "" if seq is None else str(seq),
        "channel": str(rec["channel"]),
    }
    books5 = {"asks": orjson.dumps(asks).decode(), "bids": orjson.dumps(bids).decode(), **common}
    top = {
        "askPx": str(asks[0][0]) if asks else "",
        "askSz": str(asks[0][1]) if asks else "",
        "bidPx": str(bids[0][0]) if bids else "",
        "bidSz": str(bids[0][1]) if bids else "",
        **common,
    }
    return books5, top


def trade_member(rec: Record) -> tuple[str, bytes, float]:
    """(instId, sorted-set member, score): the member holds only the trade's own facts, so the same
    trade from a redelivered batch (or from another channel) is the same member."""
    member = orjson.dumps(
        {
            "tradeId": rec["tradeId"],
            "px": rec["px"],
            "sz": rec["sz"],
            "side": rec["side"],
            "ts": rec["ts"],
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return rec["instId"], member, float(rec["ts"])


def newest(items: Iterable[tuple[str, Version, Any]]) -> dict[str, tuple[Version, Any]]:
    """Keep the newest item per key, by the same rule as the Lua script (ties: the later one)."""
    out: dict[str, tuple[Version, Any]] = {}
    for key, version, value in items:
        kept = out.get(key)
        if kept is None or tuple(v for _, v in version) >= tuple(v for _, v in kept[0]):
            out[key] = (version, value)
    return out
