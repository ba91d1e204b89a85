"""Every Redis key, MongoDB collection and index the workers use, in one place.

MongoDB (database `okex` by default). `_id` is built from the natural key (documents.py), so a
replayed batch inserts nothing new even before the secondary indexes below exist; the unique
compound indexes repeat the natural key for queries and as a second guard.

Redis (current state only; see docs/data-model.md for the memory budget):

    order<N>                  hash, one per order event, N = INCR ORDER_COUNTER (original design)
    order:counter             the INCR counter behind order<N>
    order:event:<ordId>:<uTime>:<state>   -> N: dedupe of order events (same TTL as order<N>)
    balance:<ccy>             hash ccy, cashBal, uTime            versioned by uTime
    position:<posId>          hash posId, tradeId, instId, ...    versioned by uTime
    ticker:<instId>           hash of the OKX ticker fields       versioned by ts
    books5:<instId>           hash asks, bids (JSON, top 5), ts, seqId, channel   versioned by (ts, seqId)
    book:<instId>             hash bidPx, bidSz, askPx, askSz, ts, seqId          versioned by (ts, seqId)
    trades:<instId>           sorted set of the latest trades (score ts), capped
    candle:<instId>:<bar>     hash of the current candle          versioned by (ts, confirm, vol)
    deadletters:spool         list: dead letters that could not reach MongoDB
    backfill:*                backfill's own keys (tasks/backfill/state.py)
"""
from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

# ----- MongoDB collections ------------------------------------------------------------------------
ORDER = "order"
BALANCE = "balance"
POSITION = "position"
TRADES = "trades"
BOOKS = "books"
TICKERS = "tickers"
CANDLES = "candles"
GAPS = "gaps"
FILLS = "fills"            # REST only: /trade/fills rows (backfill), natural key billId
DEAD_LETTERS = "dead_letters"

# record kind (core.contract.KINDS) -> history collection
COLLECTION_BY_KIND = {
    "orders": ORDER,
    "balances": BALANCE,
    "positions": POSITION,
    "trades": TRADES,
    "books": BOOKS,
    "tickers": TICKERS,
    "candles": CANDLES,
    "fills": FILLS,
}


def indexes(books_retention_s: int = 0) -> dict[str, list[IndexModel]]:
    """Indexes per collection. Unique ones repeat the natural key; `dt` ones serve time queries."""
    books = [IndexModel([("instId", ASCENDING), ("channel", ASCENDING), ("dt", ASCENDING)],
                        name="instId_channel_dt")]
    if books_retention_s > 0:
        books.append(IndexModel([("dt", ASCENDING)], name="dt_ttl",
                                expireAfterSeconds=books_retention_s))
    return {
        ORDER: [
            IndexModel([("ordId", ASCENDING), ("uTime", ASCENDING), ("state", ASCENDING)],
                       unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        BALANCE: [
            IndexModel([("ccy", ASCENDING), ("uTime", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("ccy", ASCENDING), ("dt", ASCENDING)], name="ccy_dt"),
        ],
        POSITION: [
            IndexModel([("posId", ASCENDING), ("uTime", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        TRADES: [
            IndexModel([("instId", ASCENDING), ("tradeId", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
            IndexModel([("validated", ASCENDING), ("instId", ASCENDING), ("dt", ASCENDING)],
                       name="validated_instId_dt"),
        ],
        BOOKS: books,
        TICKERS: [
            IndexModel([("instId", ASCENDING), ("ts", ASCENDING)], unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("dt", ASCENDING)], name="instId_dt"),
        ],
        CANDLES: [
            IndexModel([("instId", ASCENDING), ("bar", ASCENDING), ("ts", ASCENDING)],
                       unique=True, name="natural_key"),
            IndexModel([("instId", ASCENDING), ("bar", ASCENDING), ("dt", ASCENDING)],
                       name="instId_bar_dt"),
        ],
        FILLS: [
            IndexModel([("instId", ASCENDING), ("tradeId", ASCENDING), ("ordId", ASCENDING)],
                       name="instId_tradeId_ordId"),
            IndexModel([("instType", ASCENDING), ("dt", ASCENDING)], name="instType_dt"),
        ],
        GAPS: [
            IndexModel([("status", ASCENDING), ("channel", ASCENDING), ("instId", ASCENDING)],
                       name="status_channel_instId"),
        ],
        DEAD_LETTERS: [
            IndexModel([("status", ASCENDING), ("time", DESCENDING)], name="status_time"),
        ],
    }


# ----- Redis keys -----------------------------------------------------------------------------------
ORDER_PREFIX = "order"            # order<N>, as in the original design
ORDER_COUNTER = "order:counter"
DEADLETTER_SPOOL = "deadletters:spool"


def order_key(n: int) -> str:
    return f"{ORDER_PREFIX}{n}"


def order_event(ord_id: str, u_time: str, state: str) -> str:
    return f"order:event:{ord_id}:{u_time}:{state}"


def balance(ccy: str) -> str:
    return f"balance:{ccy}"


def position(pos_id: str) -> str:
    return f"position:{pos_id}"


def ticker(inst_id: str) -> str:
    return f"ticker:{inst_id}"


def books5(inst_id: str) -> str:
    return f"books5:{inst_id}"


def book(inst_id: str) -> str:
    return f"book:{inst_id}"


def trades(inst_id: str) -> str:
    return f"trades:{inst_id}"


def candle(inst_id: str, bar: str) -> str:
    return f"candle:{inst_id}:{bar}"


# ----- backfill's own Redis keys (on the broker Redis, next to the feeder's gap ledger) -----------
# backfill:stale:<channel>:<instId>  exchange ms up to which a sweep already opened a stale gap
# backfill:fills:<instType>          exchange ms of the newest fill synced (fills sync cursor)
# audit:<instId>                     hash: validated_until, missing, extra, confirmed,
#                                    window_start, window_end, at_ms (last audit of instId)

def backfill_stale(channel: str, inst_id: str) -> str:
    return f"backfill:stale:{channel}:{inst_id}"


def backfill_fills(inst_type: str) -> str:
    return f"backfill:fills:{inst_type}"


def audit(inst_id: str) -> str:
    return f"audit:{inst_id}"


# ----- REST rate limits (core/rest_limits.py) -----------------------------------------------------
# ratelimit:log:{<scope>}    zset: request id -> µs (Redis TIME) it was counted at (future while
#                            the request is in flight)
# ratelimit:pause:{<scope>}  flag with a TTL: every caller of the endpoint waits it out (50011/429)
# <scope> = endpoint path after /api/v5, "@<account label>" added for private endpoints. The braces
# are a hash tag: both keys of one endpoint land in one Redis Cluster slot (one Lua script).
RATELIMIT_PREFIX = "ratelimit:"


def ratelimit_log(scope: str, prefix: str = RATELIMIT_PREFIX) -> str:
    return f"{prefix}log:{{{scope}}}"


def ratelimit_pause(scope: str, prefix: str = RATELIMIT_PREFIX) -> str:
    return f"{prefix}pause:{{{scope}}}"
