"""REST snapshots of current state: balances and positions (after downtime, a dead feeder, an
account gap), a book (reseeds Redis after a book gap), a ticker.

OKX lists only non-zero balances and open positions, so a currency that went to zero or a
position closed while nobody listened would keep its old value in Redis. `closed_since` finds
them (pure): whatever Redis holds as non-zero but the snapshot no longer lists is written as
zero, with source "rest" and a uTime after the stored one, so the versioned write applies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from core import keys

log = logging.getLogger(__name__)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _zero(value: str) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False


def closed_since(
    stored: Iterable[dict], listed_ids: set[str], id_field: str, value_field: str, now_ms: int
) -> list[dict]:
    """Records that zero what `stored` holds as non-zero and the snapshot no longer lists."""
    out = []
    for rec in stored:
        rid = rec.get(id_field, "")
        if not rid or rid in listed_ids or _zero(rec.get(value_field, "0")):
            continue
        try:
            u_time = max(int(rec.get("uTime") or 0) + 1, now_ms)
        except ValueError:
            u_time = now_ms
        out.append({**rec, value_field: "0", "uTime": str(u_time), "source": "rest"})
    return out


def stored_state(redis_client: Any, pattern: str) -> list[dict]:
    """Every hash whose key matches `pattern` (keys.BALANCE_PATTERN, keys.POSITION_PATTERN) as
    a dict of strings."""
    names = list(redis_client.scan_iter(match=pattern, count=500))
    pipe = redis_client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return [{_s(k): _s(v) for k, v in h.items()} for h in pipe.execute() if h]


def snapshot_account(source: Any, store: Any, redis_client: Any, now_ms: int) -> dict[str, int]:
    """Balances and positions over REST, stored with source "rest"; vanished ones zeroed."""
    bals = source.balances()
    poss = source.positions()
    zero_bals = closed_since(
        stored_state(redis_client, keys.BALANCE_PATTERN),
        {b["ccy"] for b in bals},
        "ccy",
        "cashBal",
        now_ms,
    )
    zero_pos = closed_since(
        stored_state(redis_client, keys.POSITION_PATTERN),
        {p["posId"] for p in poss},
        "posId",
        "pos",
        now_ms,
    )
    for kind, recs in (("balances", bals + zero_bals), ("positions", poss + zero_pos)):
        if recs:
            store.write(kind, recs, source="rest")
    if zero_bals or zero_pos:
        log.info(
            "account snapshot: %d balances and %d positions gone since the last state "
            "stored as zero",
            len(zero_bals),
            len(zero_pos),
        )
    return {"balances": len(bals), "positions": len(poss), "zeroed": len(zero_bals) + len(zero_pos)}


def reseed_book(source: Any, store: Any, inst_id: str) -> int:
    store.write("books", [source.book(inst_id)], source="rest")
    return 1


def reseed_ticker(source: Any, store: Any, inst_id: str) -> int:
    store.write("tickers", [source.ticker(inst_id)], source="rest")
    return 1
