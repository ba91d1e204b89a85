"""The wire contract between the feeder (and backfill) and the Celery workers. Defined once, here.

A task is sent by name, so the feeder never imports the workers' code. Every per-kind ingest task
takes one positional argument, a batch envelope (INGEST_MIXED_TASK takes a list of them):

    {"v": 1,                 # contract version; workers refuse versions they do not know
     "kind": "trades",       # one of KINDS: says which writer stores the records
     "source": "ws",         # "ws" (live feed) or "rest" (backfill, audit, snapshots)
     "producer": "feeder-1", # who sent it (feeder id, or "backfill")
     "batch": 42,            # the producer's running batch number (logs, Flower)
     "sent_ms": 1700000000000,  # publish time, for end-to-end latency
     "records": [ {...}, ... ]} # record payloads: OKX field names, OKX string values

Record payloads per kind (all values strings as OKX sends them unless noted):
    trades    instId, tradeId, px, sz, side, ts, count, source, seqId (int|None), channel
    tickers   the OKX ticker fields, ts
    candles   instId, bar, ts (bar open), o, h, l, c, vol, volCcy, volCcyQuote, confirm
    books     instId, channel, ts, seqId (int|None), asks, bids ([[px, sz, "0", count], ...] best
              first, top N), depth (int: N), full (bool: a periodic full-book snapshot)
    orders    the whole OKX order record (instType, instId, ordId, tradeId, state, cTime, uTime, ...)
    balances  ccy, cashBal, uTime, source (balance_and_position | account | rest), other OKX fields
    positions posId, instId, instType, pos, uTime, source, other OKX fields

Nothing secret ever goes into a payload: Flower shows them.
"""
from __future__ import annotations

from typing import Any

from core.errors import BadBatch  # noqa: F401 - raised here; importable from here too

VERSION = 1

INGEST_QUEUE = "ingest"
BACKFILL_QUEUE = "backfill"

KINDS = ("trades", "tickers", "candles", "books", "orders", "balances", "positions")

# kind -> Celery task name (tasks/ingest.py registers these names)
INGEST_TASKS = {kind: f"tasks.ingest.{kind}" for kind in KINDS}

# Several small batches of different kinds in one task: positional argument = a list of batch
# envelopes. The feeder sends one when a publish cycle is small (quiet market): one task instead
# of one per kind, because a worker's cost per task (~1 ms) dwarfs its cost per record.
INGEST_MIXED_TASK = "tasks.ingest.mixed"

# The feeder records a gap in the ledger, then asks for its repair with this task (id of the gap).
REPAIR_GAP_TASK = "tasks.backfill.repair_gap"
# On-demand backfill: kwargs channel, instId, start, end (ISO-8601 or ms), as the README shows.
BACKFILL_TASK = "tasks.backfill.backfill"


def make_batch(kind: str, records: list[dict[str, Any]], *, source: str, producer: str,
               batch: int, sent_ms: int) -> dict[str, Any]:
    if kind not in INGEST_TASKS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")
    return {"v": VERSION, "kind": kind, "source": source, "producer": producer, "batch": batch,
            "sent_ms": sent_ms, "records": records}


def check_batch(payload: Any, kind: str) -> list[dict[str, Any]]:
    """Validate an envelope for `kind` and return its records; raise BadBatch with the reason."""
    if not isinstance(payload, dict):
        raise BadBatch(f"batch must be an object, got {type(payload).__name__}")
    if payload.get("v") != VERSION:
        raise BadBatch(f"unsupported batch version {payload.get('v')!r} (this worker speaks {VERSION})")
    if payload.get("kind") != kind:
        raise BadBatch(f"batch of kind {payload.get('kind')!r} sent to the {kind!r} task")
    records = payload.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadBatch("records must be a list of objects")
    return records


# ----- the feeder's own Redis keys: gap ledger, watermarks, heartbeat ---------------------------
# The feeder writes these; backfill, beat sweeps and `python -m collector status` read them.
# (The workers' state keys live in core/keys.py.)
#
# gap:<id>        hash  id, channel, instId, start_ms, end_ms, start_id, end_id (tradeId/seqId
#                       bounds when known, else ""), cause, status, reason, feeder, created_ms,
#                       updated_ms
# gaps:open       zset  ids of gaps whose status is open or filling, score = start_ms
# gaps:all        zset  every gap id, score = created_ms (trimmed to GAPS_KEEP)
# gaps:seq        int   INCR source of gap ids
# wm:<channel>:<instId>  hash  ts (last exchange time seen, ms), id (last tradeId/seqId),
#                              seen_ms (local time)
# feeder:<feeder_id>     hash  heartbeat_ms, pid, started_ms, connections (JSON)  (TTL HEARTBEAT_TTL)
# feeders          set   feeder ids that have written a heartbeat

GAP_CAUSES = ("reconnect", "seq_gap", "checksum", "crossed", "stale", "publish_overflow",
              "startup", "audit", "manual", "bad_data")
# manual: `celery call backfill` or the backfill CLI; bad_data: a book level whose price is not a
# number (the book resyncs, the window in between is a gap)
GAP_STATUSES = ("open", "filling", "filled", "unrepairable")
GAPS_KEEP = 100_000
HEARTBEAT_TTL_S = 60


def gap_key(gap_id: str) -> str:
    return f"gap:{gap_id}"


GAPS_OPEN = "gaps:open"
GAPS_ALL = "gaps:all"
GAPS_SEQ = "gaps:seq"
FEEDERS = "feeders"


def watermark_key(channel: str, inst_id: str) -> str:
    return f"wm:{channel}:{inst_id}"


def feeder_key(feeder_id: str) -> str:
    return f"feeder:{feeder_id}"
