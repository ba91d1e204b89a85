"""Every Redis key, key pattern and MongoDB collection name, in one place (names only: no driver).

The feeder imports this module too, so it holds plain strings and functions and imports nothing
(MongoDB's index definitions live with the workers, in tasks/writers/indexes.py). Each key
family has one prefix constant; its key function and its SCAN pattern are both built from that
constant, so they cannot drift apart. Task and queue names are in core/contract.py.

MongoDB (database `okex` by default). `_id` is built from the natural key (documents.py), so a
replayed batch inserts nothing new even before the secondary indexes exist.

Redis, the workers' current state (see docs/data-model.md for the memory budget):

    order<N>                  hash, one per order event, N = INCR ORDER_COUNTER (original design)
    order:counter             the INCR counter behind order<N>
    order:event:<ordId>:<uTime>:<state>   -> N: dedupe of order events (same TTL as order<N>)
    balance:<ccy>             hash ccy, cashBal, uTime            versioned by uTime
    position:<posId>          hash posId, tradeId, instId, ...    versioned by uTime
    ticker:<instId>           hash of the OKX ticker fields       versioned by ts
    books5:<instId>           hash asks, bids (JSON, top 5), ts, seqId, channel
                                                                  versioned by (ts, seqId)
    book:<instId>             hash bidPx, bidSz, askPx, askSz, ts, seqId
                                                                  versioned by (ts, seqId)
    trades:<instId>           sorted set of the latest trades (score ts), capped
    candle:<instId>:<bar>     hash of the current candle          versioned by (ts, confirm, vol)
    deadletters:spool         list: dead letters that could not reach MongoDB
    deadletters:spool:bytes   int: bytes held by that list (bounded, DEADLETTER_SPOOL_MAX_BYTES)

Redis, the workers' history path (on the broker Redis; docs/history-path.md):

    history:breaker:<name>    hash state (closed|open|half_open), failures, opened_ms,
                              changed_ms, reason, drain_until_ms, drain_token
    history:pending           list: parked history batches (zlib JSON), oldest first
    history:draining          list: the chunk a drain task took out of history:pending
    history:pending:bytes     int: bytes held by both lists (HISTORY_PENDING_MAX_BYTES)

Redis, the feeder's own keys (gap ledger, watermarks, heartbeat; on the broker Redis). The feeder
writes them; backfill, beat sweeps and `python -m collector status` read them:

    gap:<id>        hash  id, channel, instId, start_ms, end_ms, start_id, end_id (tradeId/seqId
                          bounds when known, else ""), cause, status, reason, feeder, created_ms,
                          updated_ms
    gaps:open       zset  ids of gaps whose status is open or filling, score = start_ms
    gaps:all        zset  every gap id, score = created_ms (trimmed to GAPS_KEEP)
    gaps:seq        int   INCR source of gap ids
    wm:<channel>:<instId>  hash  ts (last exchange time published, ms), id (last tradeId/seqId),
                                 seen_ms (local time), feeder (who advanced it last): the
                                 shard's newest, combined over its feeders (a Lua max: it
                                 never moves back when a slower feeder writes)
    wmf:<feeder_id>  hash  "<channel>:<instId>" -> JSON {ts, id, seen_ms}: this feeder's own
                           watermarks (its startup-gap rule reads only these; TTL
                           FEEDER_WATERMARKS_TTL_S, renewed at every write)
    feeder:<feeder_id>     hash  heartbeat_ms, pid, host, shard, started_ms, connections (JSON)
                                 (TTL HEARTBEAT_TTL_S)
    feeders          set   feeder ids that have written a heartbeat
    shard:<shard>    hash  feeder id -> heartbeat_ms: the feeders of a shard (a clean stop removes
                           its own field; a killed feeder's stays: the shard is then short of
                           one; fields older than SHARD_MEMBER_KEEP_S are ignored; TTL the same)
    shards           set   shard names that have had a feeder
    gaps:uncovered:<shard>:<channel>:<instId>  zset  "<start_ms>:<end_ms>:<gap id>[/<part>]" ->
                           start_ms: the windows of a shard no feeder covered that already have
                           a gap (one gap per window when both feeders recorded it; trimmed by
                           age like the coverage)
    cov:<shard>:<channel>:<instId>  zset  "<feeder>|<start_ms>" -> end_ms: the intervals each
                           feeder of the shard covered continuously with published records
                           (trimmed by age, COVERAGE_KEEP_MS; docs/redundancy.md)

Redis keys other software owns, named here so nothing else spells them: kombu's `unacked` hash
(its Redis transport's default) and RedBeat's `redbeat:` prefix (celeryconfig.py sets it).
Backfill's own keys (backfill:*, audit:*) and the REST rate limits close the file.
"""

from __future__ import annotations

# ----- MongoDB collections ------------------------------------------------------------------------
ORDER = "order"
BALANCE = "balance"
POSITION = "position"
TRADES = "trades"
BOOKS = "books"
TICKERS = "tickers"
CANDLES = "candles"
GAPS = "gaps"
FILLS = "fills"  # REST only: /trade/fills rows (backfill), natural key billId
DEAD_LETTERS = "dead_letters"
VWAP = "vwap"  # rolling VWAP per instrument per second mark (tasks/derive)
# The read side's names for them (docs: the shared contract of the read side)
CANDLES_COLLECTION = CANDLES  # OKX's candles and (source "trades") candles built from trades
VWAP_COLLECTION = VWAP

# Every collection name. Not Redis keys: tests/test_layout_keys.py leaves these words alone
# (they double as record kinds and channel names everywhere).
COLLECTIONS = (
    ORDER,
    BALANCE,
    POSITION,
    TRADES,
    BOOKS,
    TICKERS,
    CANDLES,
    GAPS,
    FILLS,
    DEAD_LETTERS,
    VWAP,
)

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


# ----- Redis keys: the workers' current state ---------------------------------------------------
ORDER_PREFIX = "order"  # order<N>, as in the original design
ORDER_COUNTER = f"{ORDER_PREFIX}:counter"
ORDER_EVENT_PREFIX = f"{ORDER_PREFIX}:event:"
BALANCE_PREFIX = "balance:"
POSITION_PREFIX = "position:"
TICKER_PREFIX = "ticker:"
BOOKS5_PREFIX = "books5:"
BOOK_PREFIX = "book:"
TRADES_PREFIX = "trades:"
CANDLE_PREFIX = "candle:"
DEADLETTER_SPOOL = "deadletters:spool"
DEADLETTER_SPOOL_BYTES = f"{DEADLETTER_SPOOL}:bytes"

# SCAN/KEYS (and keyspace-notification) patterns of the families read back as a whole
# (account snapshots, bench/common.py's latency probe)
BALANCE_PATTERN = f"{BALANCE_PREFIX}*"
POSITION_PATTERN = f"{POSITION_PREFIX}*"
TICKER_PATTERN = f"{TICKER_PREFIX}*"
BOOKS5_PATTERN = f"{BOOKS5_PREFIX}*"
TRADES_PATTERN = f"{TRADES_PREFIX}*"


def order_key(n: int) -> str:
    return f"{ORDER_PREFIX}{n}"


def order_event(ord_id: str, u_time: str, state: str) -> str:
    return f"{ORDER_EVENT_PREFIX}{ord_id}:{u_time}:{state}"


def balance(ccy: str) -> str:
    return f"{BALANCE_PREFIX}{ccy}"


def position(pos_id: str) -> str:
    return f"{POSITION_PREFIX}{pos_id}"


def ticker(inst_id: str) -> str:
    return f"{TICKER_PREFIX}{inst_id}"


def books5(inst_id: str) -> str:
    return f"{BOOKS5_PREFIX}{inst_id}"


def book(inst_id: str) -> str:
    return f"{BOOK_PREFIX}{inst_id}"


def trades(inst_id: str) -> str:
    return f"{TRADES_PREFIX}{inst_id}"


def candle(inst_id: str, bar: str) -> str:
    return f"{CANDLE_PREFIX}{inst_id}:{bar}"


# ----- Redis keys: the feeder's gap ledger, watermarks and heartbeat -----------------------------
# GAPS_KEEP and HEARTBEAT_TTL_S bound these keys (length of gaps:all, TTL of feeder:<id>), so
# they live with them. The gap's causes and statuses are values of the record, not key names:
# they stay in core/contract.py.
GAP_PREFIX = "gap:"
GAPS_OPEN = "gaps:open"
GAPS_ALL = "gaps:all"
GAPS_SEQ = "gaps:seq"
WATERMARK_PREFIX = "wm:"
FEEDER_PREFIX = "feeder:"
FEEDERS = "feeders"
SHARD_PREFIX = "shard:"
SHARDS = "shards"
SHARD_MEMBER_KEEP_S = 86_400
FEEDER_WATERMARKS_PREFIX = "wmf:"
COVERAGE_PREFIX = "cov:"
GAPS_UNCOVERED_PREFIX = "gaps:uncovered:"
GAPS_KEEP = 100_000
HEARTBEAT_TTL_S = 60
FEEDER_WATERMARKS_TTL_S = 30 * 86_400  # a feeder id unused this long loses its watermarks
COVERAGE_KEEP_MS = 6 * 3_600_000  # coverage older than this is trimmed (gaps close far sooner)

GAP_PATTERN = f"{GAP_PREFIX}*"
WATERMARK_PATTERN = f"{WATERMARK_PREFIX}*"


def gap_key(gap_id: str) -> str:
    return f"{GAP_PREFIX}{gap_id}"


def watermark_key(channel: str, inst_id: str) -> str:
    return f"{WATERMARK_PREFIX}{channel}:{inst_id}"


def watermark_pattern(channel_prefix: str = "") -> str:
    """SCAN pattern of the watermarks whose channel starts with `channel_prefix` ("trades"
    matches trades and trades-all)."""
    return f"{WATERMARK_PREFIX}{channel_prefix}*"


def parse_watermark_key(name: str) -> tuple[str, str]:
    """(channel, instId) of a watermark key (instIds may not hold ':' but stay whole if so)."""
    if not name.startswith(WATERMARK_PREFIX):
        raise ValueError(f"not a watermark key: {name!r}")
    channel, _, inst_id = name[len(WATERMARK_PREFIX) :].partition(":")
    return channel, inst_id


def feeder_key(feeder_id: str) -> str:
    return f"{FEEDER_PREFIX}{feeder_id}"


def shard_key(shard: str) -> str:
    return f"{SHARD_PREFIX}{shard}"


def coverage_pattern(shard: str) -> str:
    """SCAN pattern of every coverage zset of `shard`."""
    return f"{COVERAGE_PREFIX}{shard}:*"


def parse_coverage_key(name: str, shard: str) -> tuple[str, str]:
    """(channel, instId) of a coverage key of `shard`."""
    channel, _, inst_id = name[len(COVERAGE_PREFIX) + len(shard) + 1 :].partition(":")
    return channel, inst_id


def feeder_watermarks(feeder_id: str) -> str:
    """The hash of one feeder's own watermarks (its fields: collector/ledger.py)."""
    return f"{FEEDER_WATERMARKS_PREFIX}{feeder_id}"


def uncovered_key(shard: str, channel: str, inst_id: str) -> str:
    return f"{GAPS_UNCOVERED_PREFIX}{shard}:{channel}:{inst_id}"


def coverage_key(shard: str, channel: str, inst_id: str) -> str:
    return f"{COVERAGE_PREFIX}{shard}:{channel}:{inst_id}"


# ----- Redis keys: the history path (tasks/history/, on the broker Redis) ------------------------
HISTORY_BREAKER_PREFIX = "history:breaker:"
HISTORY_PENDING = "history:pending"
HISTORY_DRAINING = "history:draining"
HISTORY_PENDING_BYTES = f"{HISTORY_PENDING}:bytes"
MONGO_BREAKER = "mongodb"  # the breaker's name: the store it guards


def history_breaker(name: str) -> str:
    return f"{HISTORY_BREAKER_PREFIX}{name}"


# ----- Redis keys that Celery's parts own ---------------------------------------------------------
KOMBU_UNACKED = "unacked"  # kombu's Redis transport: delivered, not yet acknowledged
REDBEAT_PREFIX = "redbeat:"  # RedBeat's schedule and lock (celeryconfig.redbeat_key_prefix)


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


# ----- derived data (tasks/derive), on the current-state Redis ---------------------------------------
# vwap:<instId>             hash vwap, ts, window_ms, n, validated ("1"/"0"): the latest mark
# derive:validated_until    hash instId -> ms: VWAP marks up to here were recomputed with the
#                           audit's validated flags
# derive:dirty              zset "<instId>|<minute ms>" -> µs it was last marked (the trades
#                           writer and backfill mark; the derive task rebuilds and removes)
# derive:vwap_until         hash instId -> ms of the newest VWAP mark computed
# derive:first_trade       hash instId -> ms of the first stored trade (read once)
# derive:covered_from      hash instId -> ms: the earliest start of a filled trades backfill
#                           (trades are known from the earlier of the two on)
# derive:newest            hash instId -> ms of the newest stored trade the rebuild has seen
# derive:seen_wm           hash instId -> the trades watermark at the last rebuild
# derive:holes:<instId>     zset "<start>:<end>" -> start: unrepairable trade gaps (bars touching
#                           them are incomplete for good)
VWAP_PREFIX = "vwap:"
DERIVE_PREFIX = "derive:"
VALIDATED_UNTIL_KEY = f"{DERIVE_PREFIX}validated_until"
DERIVE_DIRTY = f"{DERIVE_PREFIX}dirty"
DERIVE_VWAP_UNTIL = f"{DERIVE_PREFIX}vwap_until"
DERIVE_COVERED_FROM = f"{DERIVE_PREFIX}covered_from"
DERIVE_NEWEST = f"{DERIVE_PREFIX}newest"
DERIVE_FIRST_TRADE = f"{DERIVE_PREFIX}first_trade"
DERIVE_SEEN_WM = f"{DERIVE_PREFIX}seen_wm"
DERIVE_HOLES_PREFIX = f"{DERIVE_PREFIX}holes:"
DERIVE_LOCK = f"{DERIVE_PREFIX}lock"  # one rebuild at a time (SET NX PX)


def vwap_key(inst_id: str) -> str:
    return f"{VWAP_PREFIX}{inst_id}"


def derive_holes(inst_id: str) -> str:
    return f"{DERIVE_HOLES_PREFIX}{inst_id}"


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


# ----- duplicates from redundant feeders (tasks/writers/seen.py), on the current-state Redis ----
# seen:<kind>:<scope>:<bucket>  set of the identities of records stored (core/identity.py),
#                               TTL INGEST_DEDUPE_TTL_S. scope = instId (books:
#                               channel|instId), bucket = the record's exchange time // 1 s.
SEEN_PREFIX = "seen:"


def seen(kind: str, scope: str, bucket: int) -> str:
    return f"{SEEN_PREFIX}{kind}:{scope}:{bucket}"


# ----- publish claims of redundant feeders (collector/claims.py), on the BROKER's Redis ---------
# claim:<shard>:<kind>:<scope>:<bucket>  set of the identities (core/identity.py) of records a
#                               feeder of <shard> pushed onto the ingest queue, added by the same
#                               script as the LPUSH; TTL FEEDER_CLAIM_TTL. scope and bucket as seen:.
CLAIM_PREFIX = "claim:"


def claim(shard: str, kind: str, scope: str, bucket: int) -> str:
    return f"{CLAIM_PREFIX}{shard}:{kind}:{scope}:{bucket}"
