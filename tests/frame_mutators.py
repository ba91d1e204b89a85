"""Mutators of valid OKX frames and an independent checker of their items, shared by the
property test (tests/test_parse_property.py) and the fuzz bench (bench/fuzz.py).

`mutate(rng, frame)` changes exactly one field (anywhere in data[0]: a top-level field, a book
level's element, an account detail's field, a candle's index) to another type, a non-numeric,
empty, blank, huge, unicode-digit, hex or exponent string, a nested object, or removes it.

`item_ok(channel, item)` says whether an item is valid per OKX's documented types. It is
written here from the docs again, with regular expressions, and shares no code with
okx/schemas.py: the tests compare the two.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

from tests.recordings.okx_docs_frames import WS_FRAMES

# ----- the independent checker ----------------------------------------------------------------

_TYPES = {
    "d": re.compile(r"[0-9]{1,40}(\.[0-9]{1,40})?"),  # unsigned decimal
    "s": re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?"),  # signed decimal
    "de": re.compile(r"([0-9]{1,40}(\.[0-9]{1,40})?)?"),
    "se": re.compile(r"(-?[0-9]{1,40}(\.[0-9]{1,40})?)?"),
    "id": re.compile(r"[0-9]{1,19}"),
    "sid": re.compile(r"-?[0-9]{1,19}"),
    "ide": re.compile(r"([0-9]{1,19})?"),
    "ms": re.compile(r"[0-9]{1,14}"),
    "mse": re.compile(r"([0-9]{1,14})?"),
    "str": re.compile(r".*", re.S),
    "nstr": re.compile(r".+", re.S),
}


def _enum(*values: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(v) for v in values) or "(?!)")


_TYPES["side"] = _enum("buy", "sell")
_TYPES["src"] = _enum("0", "1")
_TYPES["instType"] = _enum("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
_TYPES["state"] = _enum("live", "partially_filled", "filled", "canceled", "mmp_canceled")
_TYPES["exec"] = re.compile("T|M|")
_TYPES["posSide"] = re.compile("long|short|net|")
_TYPES["mgnMode"] = re.compile("cross|isolated|")
_TYPES["tdMode"] = re.compile("cross|isolated|cash|spot_isolated|")
_TYPES["tf"] = re.compile("true|false|")
_TYPES["ordType"] = _enum(
    "market", "limit", "post_only", "fok", "ioc", "optimal_limit_ioc", "mmp",
    "mmp_and_post_only", "op_fok", "elp",
)  # fmt: skip
_TYPES["evt"] = _enum(
    "snapshot", "event_update", "filled", "delivered", "exercised", "transferred",
    "liquidation", "claw_back", "adl", "funding_fee", "adjust_margin", "set_leverage",
    "interest_deduction", "settlement",
)  # fmt: skip
_INT64 = 1 << 63


def _fields(spec: str) -> dict[str, tuple[str, bool]]:
    """'name:type name:type! ...' ('!': required)."""
    out = {}
    for part in spec.split():
        name, kind = part.split(":")
        out[name] = (kind.rstrip("!"), kind.endswith("!"))
    return out


TRADE = _fields(
    "instId:nstr! tradeId:id! px:d! sz:d! side:side! ts:ms! count:id src:src seqId:int"
).copy()
TRADE["source"] = TRADE.pop("src")
TICKER = _fields(
    "instId:nstr! ts:ms! instType:instType last:d lastSz:de askPx:de askSz:de bidPx:de "
    "bidSz:de open24h:de high24h:de low24h:de volCcy24h:de vol24h:de sodUtc0:de sodUtc8:de"
)
BOOK = _fields("asks:list! bids:list! ts:ms! checksum:int instId:nstr seqId:int prevSeqId:int")
ORDER = _fields(
    "instType:instType! instId:nstr! ordId:id! state:state! uTime:ms! cTime:ms! clOrdId:str "
    "tag:str ccy:str tgtCcy:str px:de pxUsd:de pxVol:de pxType:str sz:d notionalUsd:de "
    "ordType:ordType side:side posSide:posSide tdMode:tdMode fillPx:de tradeId:ide fillSz:de "
    "fillPnl:se fillTime:mse fillFee:se fillFeeCcy:str fillPxVol:de fillPxUsd:de "
    "fillMarkVol:de fillFwdPx:de fillMarkPx:de fillIdxPx:de fillNotionalUsd:de execType:exec "
    "accFillSz:de avgPx:de lever:de attachAlgoClOrdId:str tpTriggerPx:de tpOrdPx:se "
    "slTriggerPx:de slOrdPx:se attachAlgoOrds:list linkedAlgoOrd:dict feeCcy:str fee:se "
    "rebateCcy:str rebate:se pnl:se source:str category:str reduceOnly:tf isTpLimit:tf "
    "cancelSource:str amendResult:str reqId:str lastPx:de code:str msg:str"
)
BALANCE = _fields(
    "ccy:nstr! cashBal:s! uTime:mse eq:se availBal:se frozenBal:se ordFrozen:se availEq:se "
    "isoEq:se disEq:se fixedBal:se liab:se upl:se uplLiab:se crossLiab:se isoLiab:se "
    "rewardBal:se mgnRatio:se imr:se mmr:se interest:se twap:se maxLoan:se eqUsd:se "
    "borrowFroz:se notionalLever:se stgyEq:se isoUpl:se spotInUseAmt:se spotBal:se "
    "openAvgPx:se accAvgPx:se spotUpl:se spotUplRatio:se totalPnl:se totalPnlRatio:se "
    "collateralEnabled:bool collateralRestrict:bool"
)
ACCOUNT = _fields(
    "details:list! uTime:mse totalEq:se isoEq:se adjEq:se availEq:se ordFroz:se imr:se mmr:se "
    "borrowFroz:se mgnRatio:se notionalUsd:se upl:se"
)
POSITION = _fields(
    "posId:id! instId:nstr! instType:instType! pos:s! uTime:ms! mgnMode:mgnMode "
    "posSide:posSide posCcy:str ccy:str availPos:se avgPx:de nonSettleAvgPx:de markPx:de "
    "last:de idxPx:de liqPx:de bePx:de lever:de upl:se uplRatio:se uplLastPx:se "
    "uplRatioLastPx:se realizedPnl:se settledPnl:se pnl:se fee:se fundingFee:se liqPenalty:se "
    "interest:se liab:se imr:se mmr:se margin:se mgnRatio:se notionalUsd:se tradeId:ide "
    "cTime:mse pTime:mse closeOrderAlgo:list"
)
BAL_AND_POS = _fields("pTime:mse eventType:evt balData:list posData:list trades:list")


def _value_ok(kind: str, v: Any) -> bool:
    if kind == "int":
        return type(v) is int and -_INT64 <= v < _INT64
    if kind == "bool":
        return type(v) is bool
    if kind == "list":
        return type(v) is list
    if kind == "dict":
        return type(v) is dict
    return type(v) is str and _TYPES[kind].fullmatch(v) is not None


def fields_ok(spec: dict[str, tuple[str, bool]], item: Any) -> bool:
    if type(item) is not dict:
        return False
    for name, (kind, required) in spec.items():
        if name not in item:
            if required:
                return False
            continue
        if not _value_ok(kind, item[name]):
            return False
    return True


def _level_ok(level: Any) -> bool:
    if type(level) is not list or len(level) not in (2,) and len(level) < 4:
        return False
    if not all(type(v) is str for v in level):
        return False
    if not (_TYPES["d"].fullmatch(level[0]) and _TYPES["d"].fullmatch(level[1])):
        return False
    return all(re.fullmatch(r"[0-9]{1,19}", v) for v in level[2:4])


_CANDLE_KINDS = ("ms", "d", "d", "d", "d", "d", "d", "d")


def item_ok(channel: str, item: Any, frame: dict[str, Any] | None = None) -> bool:
    """Is this data item valid per OKX's documented types? (Independent of okx/schemas.py.)"""
    if channel.startswith("candle"):
        if type(item) is not list or len(item) < 7 or not all(type(v) is str for v in item):
            return False
        if not all(_value_ok(k, v) for k, v in zip(_CANDLE_KINDS, item)):
            return False
        return len(item) < 9 or item[8] in ("0", "1")
    if channel in ("trades", "trades-all"):
        return fields_ok(TRADE, item)
    if channel == "tickers":
        return fields_ok(TICKER, item)
    if channel.startswith("books") or channel == "bbo-tbt":
        if not fields_ok(BOOK, item):
            return False
        if channel in ("books", "books-l2-tbt", "books50-l2-tbt"):
            if ("seqId" in item) != ("prevSeqId" in item):  # together or not at all
                return False
        if "instId" not in item and not (frame and "instId" in frame.get("arg", {})):
            return False
        return all(_level_ok(lv) for lv in item["asks"] + item["bids"])
    if channel == "orders":
        return fields_ok(ORDER, item)
    if channel == "positions":
        return fields_ok(POSITION, item)
    if channel == "account":
        if not fields_ok(ACCOUNT, item):
            return False
        return all(fields_ok(BALANCE, d) for d in item["details"]) and all(
            d.get("uTime") or item.get("uTime") for d in item["details"]
        )
    if channel == "balance_and_position":
        if not fields_ok(BAL_AND_POS, item):
            return False
        bals, poss = item.get("balData") or [], item.get("posData") or []
        return (
            all(fields_ok(BALANCE, b) for b in bals)
            and all(b.get("uTime") or item.get("pTime") for b in bals)
            and all(fields_ok(POSITION, p) for p in poss)
        )
    raise KeyError(channel)


# ----- mutators ---------------------------------------------------------------------------------

_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
MISSING = object()

MUTATIONS: tuple[tuple[str, Any], ...] = (
    ("non-numeric", "12a"),
    ("empty", ""),
    ("blank", "  "),
    ("hex", "0x1F"),
    ("exponent", "1e5"),
    ("exponent-junk", "1e400x"),
    ("plus", "+1"),
    ("double-minus", "--1"),
    ("minus", "-1"),
    ("trailing-dot", "1."),
    ("leading-dot", ".1"),
    ("two-dots", "1.2.3"),
    ("leading-space", " 1"),
    ("trailing-space", "1 "),
    ("inf", "inf"),
    ("nan", "nan"),
    ("superscript", "²"),
    ("huge-string", "9" * 41),
    ("huge-id", "9" * 20),
    ("huge-int", 10**30),
    ("u64-int", (1 << 64) - 1),
    ("int", 12),
    ("float", 12.5),
    ("bool", True),
    ("null", None),
    ("list", ["1"]),
    ("missing", MISSING),
    ("nested", "NESTED"),
    ("arabic-digits", "ARABIC"),
    ("fullwidth-digits", "FULLWIDTH"),
)


def _paths(item: Any) -> list[tuple[Any, ...]]:
    """Every mutable position in an item: its fields and the fields one or two levels down
    (book levels, account details, balData/posData entries, candle indexes)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(item, list):
        return [(i,) for i in range(len(item))]
    for key, value in item.items():
        out.append((key,))
        if isinstance(value, list):
            for i, sub in enumerate(value[:2]):
                out.append((key, i))
                if isinstance(sub, list):
                    out.extend((key, i, j) for j in range(len(sub)))
                elif isinstance(sub, dict):
                    out.extend((key, i, k) for k in sub)
    return out


def mutate_item(rng: random.Random, item: Any) -> tuple[Any, str]:
    """A deep copy of `item` with one field changed; (copy, label)."""
    out = copy.deepcopy(item)
    paths = _paths(out)
    path = paths[rng.randrange(len(paths))]
    name, value = MUTATIONS[rng.randrange(len(MUTATIONS))]
    node = out
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    old = node[last]
    if value == "NESTED":
        value = {"value": old}
    elif value == "ARABIC":
        value = str(old).translate(_ARABIC)
    elif value == "FULLWIDTH":
        value = str(old).translate(_FULLWIDTH)
    if value is MISSING:
        if isinstance(node, list):
            del node[last]
        else:
            del node[last]
    else:
        node[last] = value
    return out, f"{'.'.join(map(str, path))}={name}"


def mutate(rng: random.Random, channel: str | None = None) -> tuple[str, dict[str, Any], str]:
    """(channel, a frame of a documented shape with one field of data[0] mutated, label)."""
    if channel is None:
        channel = rng.choice(sorted(WS_FRAMES))
    frame = copy.deepcopy(WS_FRAMES[channel])
    frame["data"][0], label = mutate_item(rng, frame["data"][0])
    return channel, frame, label


def encode(frame: dict[str, Any]) -> bytes:
    """The standard library's encoder: orjson refuses the ints past 64 bits mutations make."""
    import json

    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
