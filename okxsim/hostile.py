"""The `hostile` fault: copies of valid frames with one field made invalid (docs/okxsim.md).

A collector's parser is only as good as the inputs its tests dare to send. The `malformed` fault
sends junk okxsim knows how to make (truncated JSON, binary, wrong top-level types); `hostile`
takes a frame okxsim is about to send, copies it, and breaks exactly one field of the copy: a
non-numeric or empty number, a blank side, a hex count, another JSON type, a missing required
field, an out-of-range number, digits from another script, an object where a string belongs.
The valid original is sent as well, so what a collector stores must still equal the truth; each
copy is recorded (which frame, which field, which mutation, how many connections got it) so a
test knows exactly which frames had to be rejected.

Every mutation makes the copy invalid per OKX's documented types, never merely unusual: a books
copy never carries a well-formed level that would move a book (its breakage is inside the
levels or the sequence fields), a ticker copy never empties `bidPx` (OKX sends "" on an empty
side). Pure: no I/O, no clock; `HostileFault.copy` is called by the publisher (hub.py).
"""

from __future__ import annotations

import copy as _copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Digits that str.isdigit() and int() accept but no OKX field ever holds.
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_MISSING = object()  # a mutation's "value" that deletes the field

# Channels whose copy goes BEFORE the original: a collector that wrongly accepts it would store
# the bad record and then drop the valid one as a duplicate (trades: same tradeId; books: the
# original no longer chains). Elsewhere the last value wins, so the copy goes AFTER.
COPY_FIRST = frozenset({"trades", "trades-all", "books"})

Value = Callable[[Any], Any]  # the field's current value -> the invalid one (or _MISSING)


@dataclass(frozen=True)
class Mutation:
    path: tuple[Any, ...]  # keys/indexes into data[0], e.g. ("asks", 0, 0)
    name: str  # what kind of breakage: non-numeric, empty, type, missing...
    value: Value


def _const(v: Any) -> Value:
    return lambda _old: v


def _number(old: Any) -> Any:
    """The same number as a JSON number instead of a string (or a string for an int)."""
    if isinstance(old, int) and not isinstance(old, bool):
        return str(old)
    try:
        return float(old)
    except (TypeError, ValueError):
        return 12.5


def _unicode(table: dict[int, int]) -> Value:
    return lambda old: str(old).translate(table)


def _nested(old: Any) -> Any:
    return {"value": old}


_TRADE = (
    Mutation(("tradeId",), "non-numeric", _const("12a")),
    Mutation(("px",), "empty", _const("")),
    Mutation(("px",), "non-numeric", _const("1e400x")),
    Mutation(("side",), "blank", _const("  ")),
    Mutation(("count",), "hex", _const("0x1F")),
    Mutation(("sz",), "type", _number),
    Mutation(("tradeId",), "missing", _const(_MISSING)),
    Mutation(("tradeId",), "huge", _const("9" * 40)),  # past int64, OKX's id range
    Mutation(("ts",), "unicode-digits", _unicode(_ARABIC_INDIC)),
    Mutation(("px",), "nested", _nested),
    Mutation(("tradeId",), "unicode-digits", _unicode(_FULLWIDTH)),
    Mutation(("side",), "type", _const(1)),
)

_TICKER = (
    Mutation(("last",), "non-numeric", _const("12a")),
    Mutation(("bidPx",), "non-numeric", _const("-")),
    Mutation(("askSz",), "type", _number),
    Mutation(("ts",), "missing", _const(_MISSING)),
    Mutation(("ts",), "huge", _const("9" * 40)),
    Mutation(("ts",), "unicode-digits", _unicode(_ARABIC_INDIC)),
    Mutation(("last",), "nested", _nested),
    Mutation(("ts",), "empty", _const("")),
    Mutation(("vol24h",), "hex", _const("0x1F")),
    Mutation(("instId",), "missing", _const(_MISSING)),
)

# Books: breakage inside a level or in the sequence fields; a level-less update (a heartbeat)
# gets the next mutation that does not need a level.
_BOOKS = (
    Mutation(("asks", 0, 0), "non-numeric", _const("12a")),
    Mutation(("bids", 0, 0), "empty", _const("")),
    Mutation(("asks", 0, 0), "non-numeric", _const("1e400x")),
    Mutation(("seqId",), "type", _number),
    Mutation(("bids", 0, 1), "blank", _const("  ")),
    Mutation(("asks", 0, 3), "hex", _const("0x1F")),
    Mutation(("prevSeqId",), "type", lambda old: old + 0.5),
    Mutation(("seqId",), "missing", _const(_MISSING)),
    Mutation(("seqId",), "huge", _const(10**30)),
    Mutation(("ts",), "unicode-digits", _unicode(_ARABIC_INDIC)),
    Mutation(("bids", 0, 0), "nested", _nested),
    Mutation(("asks", 0, 0), "type", _number),
    Mutation(("checksum",), "type", lambda old: str(old)),
    Mutation(("asks",), "type", _const("none")),
)

_PUSHED_BOOK = (
    Mutation(("asks", 0, 0), "non-numeric", _const("12a")),
    Mutation(("seqId",), "type", _number),
    Mutation(("bids", 0, 1), "empty", _const("")),
    Mutation(("ts",), "unicode-digits", _unicode(_ARABIC_INDIC)),
    Mutation(("ts",), "huge", _const("9" * 40)),
    Mutation(("bids", 0, 0), "nested", _nested),
    Mutation(("asks",), "missing", _const(_MISSING)),
)

_CANDLE = (
    Mutation((0,), "non-numeric", _const("12a")),
    Mutation((4,), "empty", _const("")),
    Mutation((1,), "type", _number),
    Mutation((0,), "unicode-digits", _unicode(_ARABIC_INDIC)),
    Mutation((2,), "nested", _nested),
    Mutation((5,), "non-numeric", _const("1e400x")),
    Mutation((0,), "huge", _const("9" * 40)),
)

MUTATIONS: dict[str, tuple[Mutation, ...]] = {
    "trades": _TRADE,
    "trades-all": _TRADE,
    "tickers": _TICKER,
    "books": _BOOKS,
    "books5": _PUSHED_BOOK,
    "bbo-tbt": _PUSHED_BOOK,
}


def mutations_for(channel: str) -> tuple[Mutation, ...]:
    if channel.startswith("candle"):
        return _CANDLE
    return MUTATIONS.get(channel, ())


def _apply(item: Any, m: Mutation) -> tuple[Any, Any] | None:
    """A deep copy of item with m applied, and the value written; None if m does not fit."""
    out = _copy.deepcopy(item)
    node = out
    for key in m.path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    last = m.path[-1]
    try:
        old = node[last]
    except (KeyError, IndexError, TypeError):
        return None
    new = m.value(old)
    if new is _MISSING:
        del node[last]
    else:
        node[last] = new
    return out, new


def mutate(
    channel: str, obj: dict[str, Any], n: int
) -> tuple[dict[str, Any], Mutation, Any] | None:
    """The n-th hostile copy of a frame of `channel`: (copy, mutation, value written), trying
    the channel's mutations in turn from number n; None if none fits (no data item)."""
    muts = mutations_for(channel)
    data = obj.get("data")
    if not muts or not isinstance(data, list) or not data:
        return None
    for k in range(len(muts)):
        m = muts[(n + k) % len(muts)]
        applied = _apply(data[0], m)
        if applied is not None:
            bad = dict(obj)
            bad["data"] = [applied[0], *data[1:]]
            return bad, m, applied[1]
    return None


def encode(obj: dict[str, Any]) -> bytes:
    """The copy's bytes. The standard library, not orjson: orjson refuses ints past 64 bits,
    and `huge` sends exactly those."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _label(path: tuple[Any, ...]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _identity(channel: str, item: Any) -> dict[str, Any]:
    """What names the original frame: tradeId, seqId or ts."""
    if isinstance(item, list):
        return {"ts": item[0] if item else ""}
    keys = ("tradeId", "ts") if channel.startswith("trades") else ("seqId", "prevSeqId", "ts")
    return {k: item[k] for k in keys if k in item}


@dataclass
class HostileFault:
    """One `hostile` fault window: every `every`-th frame of `channels` (of `inst`, or of every
    instrument) gets a broken copy until `until` (monotonic seconds)."""

    every: int
    until: float
    channels: frozenset[str]
    inst: str | None = None
    seen: int = 0  # frames of the chosen channels so far
    per_channel: Counter[str] = field(default_factory=Counter)  # copies made, per channel
    records: list[dict[str, Any]] = field(default_factory=list)  # every copy, in send order

    def wants(self, channel: str, inst: str, now: float) -> bool:
        if now >= self.until or (self.inst is not None and inst != self.inst):
            return False
        if channel not in self.channels and not (
            channel.startswith("candle") and "candle" in self.channels
        ):
            return False
        self.seen += 1
        return self.seen % self.every == 0

    def copy(
        self, channel: str, inst: str, obj: dict[str, Any], copies: int, ts_ms: int
    ) -> bytes | None:
        """The broken copy's bytes, recorded as sent to `copies` connections; None if no
        mutation fits this frame."""
        made = mutate(channel, obj, self.per_channel[channel])
        if made is None:
            return None
        bad, m, value = made
        self.per_channel[channel] += 1
        self.records.append(
            {
                "n": len(self.records) + 1,
                "channel": channel,
                "instId": inst,
                "field": _label(m.path),
                "mutation": m.name,
                "value": "(removed)" if value is _MISSING else repr(value)[:60],
                "original": _identity(channel, obj["data"][0]),
                "copies": copies,
                "before_original": channel in COPY_FIRST,
                "ts": ts_ms,
            }
        )
        return encode(bad)
