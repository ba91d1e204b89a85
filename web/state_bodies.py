"""The latest-state answers as JSON bytes, built from what Redis holds (pure: no I/O).

One home for the bodies of ticker, book, latest trades, candle and latest VWAP, shared by the
FastAPI routes (web/routes_state.py, which also declare them for /openapi.json) and the lean
path in front of them (web/lean_state.py), so both answer the same bytes for the same Redis
content. Where Redis already holds JSON (the book's levels, each trade) it is spliced into the
answer, not decoded and encoded again.
"""

from __future__ import annotations

from typing import Any

import orjson

from web.params import MAX_BOOK_DEPTH

_BOOK_HEAD = ("ts", "seqId", "channel")


def hash_body(h: dict[str, str]) -> bytes:
    """A state hash (ticker, candle) as stored: OKX's fields, strings."""
    return orjson.dumps(h)


def books5_body(inst_id: str, h: dict[str, str], depth: int) -> bytes:
    """The top `depth` levels from a books5 hash (its asks and bids are JSON lists)."""
    if depth >= MAX_BOOK_DEPTH:
        # books5 holds exactly the top levels as JSON: splice them, no decode and re-encode
        head = orjson.dumps({k: h.get(k, "") for k in _BOOK_HEAD})
        return b"".join(
            (
                b'{"instId":',
                orjson.dumps(inst_id),
                b',"asks":',
                h["asks"].encode(),
                b',"bids":',
                h["bids"].encode(),
                b",",
                head[1:],
            )
        )
    asks, bids = orjson.loads(h["asks"])[:depth], orjson.loads(h["bids"])[:depth]
    return _book(inst_id, asks, bids, h)


def top1_body(inst_id: str, h: dict[str, str]) -> bytes:
    """The book from the top-of-book hash (`book:`), when there is no books5."""
    asks = [[h["askPx"], h["askSz"]]] if h.get("askPx") else []
    bids = [[h["bidPx"], h["bidSz"]]] if h.get("bidPx") else []
    return _book(inst_id, asks, bids, h)


def _book(inst_id: str, asks: list[Any], bids: list[Any], h: dict[str, str]) -> bytes:
    body = {"instId": inst_id, "asks": asks, "bids": bids}
    return orjson.dumps(body | {k: h.get(k, "") for k in _BOOK_HEAD})


def trades_body(members: list[str]) -> bytes:
    """The latest trades: each sorted-set member is already one trade's JSON."""
    return b'{"items":[' + ",".join(members).encode() + b"]}"


def vwap_item(h: dict[str, Any]) -> dict[str, Any]:
    """A VWAP point as the API shows it (Redis hash or MongoDB document)."""
    validated = h.get("validated")
    return {
        "ts": int(h["ts"]),
        "vwap": str(h["vwap"]),
        "validated": validated in (True, "1", "true"),
        "n": int(h.get("n", 0)),
        "window_ms": int(h.get("window_ms", 0)),
    }


def vwap_body(h: dict[str, Any]) -> bytes:
    return orjson.dumps(vwap_item(h))
