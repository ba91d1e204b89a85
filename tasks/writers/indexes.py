"""MongoDB index definitions per collection (the workers create them; the feeder never needs them).

Unique compound indexes repeat each collection's natural key (documents.py builds `_id` from it
too, so a replayed batch inserts nothing new even before these exist): they serve queries and are
a second guard. The `dt` indexes serve time queries. Collection names come from core/keys.py.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from core.keys import (
    BALANCE,
    BOOKS,
    CANDLES,
    DEAD_LETTERS,
    FILLS,
    GAPS,
    ORDER,
    POSITION,
    TICKERS,
    TRADES,
    VWAP_COLLECTION,
)

# Indexes an older release created that the current definitions replace: ensure_indexes drops
# them. candles' unique (instId, bar, ts) admitted one candle per bar, so a candle built from
# trades (`source: "trades"`) could not sit beside OKX's own; the key now ends with `source`
# (missing on OKX's candles, so theirs stay unique as before).
# Matched by key, not by name (nx-27017, the offline stand-in, names indexes itself).
RETIRED: dict[str, list[list[tuple[str, int]]]] = {
    CANDLES: [[("instId", ASCENDING), ("bar", ASCENDING), ("ts", ASCENDING)]],
}


def indexes(books_retention_s: int = 0) -> dict[str, list[IndexModel]]:
    """Indexes per collection. Unique ones repeat the natural key; `dt` ones serve time queries."""
    books = [
        IndexModel(
            [("instId", ASCENDING), ("channel", ASCENDING), ("dt", ASCENDING)],
            name="instId_channel_dt",
        )
    ]
    if books_retention_s > 0:
        books.append(
            IndexModel([("dt", ASCENDING)], name="dt_ttl", expireAfterSeconds=books_retention_s)
        )
    return {
        ORDER: [
            IndexModel(
                [("ordId", ASCENDING), ("uTime", ASCENDING), ("state", ASCENDING)],
                unique=True,
                name="natural_key",
            ),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        BALANCE: [
            IndexModel([("ccy", ASCENDING), ("uTime", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("ccy", ASCENDING), ("dt", ASCENDING)], name="ccy_dt"),
        ],
        POSITION: [
            IndexModel(
                [("posId", ASCENDING), ("uTime", ASCENDING)], unique=True, name="natural_key"
            ),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        TRADES: [
            IndexModel(
                [("instId", ASCENDING), ("tradeId", ASCENDING)], unique=True, name="natural_key"
            ),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
            IndexModel(
                [("validated", ASCENDING), ("instId", ASCENDING), ("dt", ASCENDING)],
                name="validated_instId_dt",
            ),
        ],
        BOOKS: books,
        TICKERS: [
            IndexModel([("instId", ASCENDING), ("ts", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        CANDLES: [
            IndexModel(
                [
                    ("instId", ASCENDING),
                    ("bar", ASCENDING),
                    ("ts", ASCENDING),
                    ("source", ASCENDING),
                ],
                unique=True,
                name="natural_key_source",
            ),
            IndexModel(
                [("instId", ASCENDING), ("bar", ASCENDING), ("dt", ASCENDING)], name="instId_bar_dt"
            ),
            # the rebuild's "not final yet" pass
            IndexModel(
                [("instId", ASCENDING), ("source", ASCENDING), ("final", ASCENDING)],
                name="instId_source_final",
            ),
        ],
        VWAP_COLLECTION: [IndexModel([("instId", ASCENDING), ("ts", ASCENDING)], name="instId_ts")],
        FILLS: [
            IndexModel(
                [("instId", ASCENDING), ("tradeId", ASCENDING), ("ordId", ASCENDING)],
                name="instId_tradeId_ordId",
            ),
            IndexModel([("instType", ASCENDING), ("dt", ASCENDING)], name="instType_dt"),
        ],
        GAPS: [
            IndexModel(
                [("status", ASCENDING), ("channel", ASCENDING), ("instId", ASCENDING)],
                name="status_channel_instId",
            )
        ],
        DEAD_LETTERS: [
            IndexModel([("status", ASCENDING), ("time", DESCENDING)], name="status_time")
        ],
    }
