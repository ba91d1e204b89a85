"""The wire contract between the feeder (and backfill) and the Celery workers. Defined once, here.

Every task name and queue name is spelled here (Redis keys and collection names: core/keys.py).
A task is sent by name, so the feeder never imports the workers' code. Every per-kind ingest task
takes one positional argument, a batch envelope (INGEST_MIXED_TASK takes a list of them):

    {"v": 1,                 # contract version; workers refuse versions they do not know
     "kind": "trades",       # one of KINDS: says which writer stores the records
     "source": "ws",         # "ws" (live feed) or "rest" (backfill, audit, snapshots)
     "producer": "feeder-1", # who sent it (feeder id, or "backfill")
     "shard": "default",     # the feeder's FEEDER_SHARD (redundant feeders share it); absent
                             # in envelopes of older feeders and of backfill: workers accept both
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
# Parked history written back to MongoDB (tasks/history/): its own queue, so a drain that waits
# on a slow MongoDB is never in front of live batches in `ingest`.
HISTORY_QUEUE = "history"

# Task names (each spelled out below, as deployments call them) start with one of these prefixes;
# celeryconfig.task_routes sends each glob to its queue.
INGEST_TASK_PREFIX = "tasks.ingest."
BACKFILL_TASK_PREFIX = "tasks.backfill."
HISTORY_TASK_PREFIX = "tasks.history."
INGEST_TASK_GLOB = f"{INGEST_TASK_PREFIX}*"  # -> INGEST_QUEUE
BACKFILL_TASK_GLOB = f"{BACKFILL_TASK_PREFIX}*"  # -> BACKFILL_QUEUE
HISTORY_TASK_GLOB = f"{HISTORY_TASK_PREFIX}*"  # -> HISTORY_QUEUE

KINDS = ("trades", "tickers", "candles", "books", "orders", "balances", "positions")

# kind -> Celery task name (tasks/ingest.py registers these names)
INGEST_TASKS = {kind: f"{INGEST_TASK_PREFIX}{kind}" for kind in KINDS}

# Several small batches of different kinds in one task: positional argument = a list of batch
# envelopes. The feeder sends one when a publish cycle is small (quiet market): one task instead
# of one per kind, because a worker's cost per task (~1 ms) dwarfs its cost per record.
INGEST_MIXED_TASK = "tasks.ingest.mixed"

# The feeder records a gap in the ledger, then asks for its repair with this task (id of the gap).
REPAIR_GAP_TASK = "tasks.backfill.repair_gap"
# On-demand backfill: kwargs channel, instId, start, end (ISO-8601 or ms), as the README shows.
BACKFILL_TASK = "tasks.backfill.backfill"
# `celery -A tasks call backfill --kwargs ...`: the short alias deployments call; it forwards to
# BACKFILL_TASK on the backfill queue.
BACKFILL_ALIAS_TASK = "backfill"
# Beat's periodic jobs (celeryconfig.beat_schedule) and the sweep's account snapshot.
SWEEP_TASK = "tasks.backfill.sweep"
AUDIT_TASK = "tasks.backfill.audit"
FILLS_TASK = "tasks.backfill.sync_fills"
SNAPSHOT_TASK = "tasks.backfill.snapshot_account"
# Writes parked history into MongoDB and probes the breaker (kwargs: token, optional). Sent by an
# ingest task when the breaker's probe is due or history is pending, and by beat as a safety net.
HISTORY_DRAIN_TASK = "tasks.history.drain"
# Beat: rebuild the candles and VWAP marks that stored trades made dirty (tasks/derive). It runs
# on the backfill queue (longer than an ingest batch, and live state must never wait for it).
DERIVE_TASK = "tasks.derive.rebuild"


def make_batch(
    kind: str,
    records: list[dict[str, Any]],
    *,
    source: str,
    producer: str,
    batch: int,
    sent_ms: int,
    shard: str | None = None,
) -> dict[str, Any]:
    if kind not in INGEST_TASKS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")
    envelope = {
        "v": VERSION,
        "kind": kind,
        "source": source,
        "producer": producer,
        "batch": batch,
        "sent_ms": sent_ms,
        "records": records,
    }
    if shard is not None:
        envelope["shard"] = shard
    return envelope


def check_batch(payload: Any, kind: str) -> list[dict[str, Any]]:
    """Validate an envelope for `kind` and return its records; raise BadBatch with the reason."""
    if not isinstance(payload, dict):
        raise BadBatch(f"batch must be an object, got {type(payload).__name__}")
    if payload.get("v") != VERSION:
        raise BadBatch(
            f"unsupported batch version {payload.get('v')!r} (this worker speaks {VERSION})"
        )
    if payload.get("kind") != kind:
        raise BadBatch(f"batch of kind {payload.get('kind')!r} sent to the {kind!r} task")
    records = payload.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadBatch("records must be a list of objects")
    return records


# ----- the gap record's values ------------------------------------------------------------------
# What a gap in the ledger can say (its Redis keys are in core/keys.py). These are values of the
# record that feeder, backfill and status all read, part of this contract, not key names.
GAP_CAUSES = (
    "reconnect",
    "seq_gap",
    "checksum",
    "crossed",
    "stale",
    "publish_overflow",
    "startup",
    "audit",
    "manual",
    "bad_data",
    "history_overflow",
)
# manual: `celery call backfill` or the backfill CLI; bad_data: a book level whose price is not a
# number (the book resyncs, the window in between is a gap); history_overflow: history parked
# while MongoDB was down outgrew HISTORY_PENDING_MAX_BYTES and its oldest window was dropped
# failed: a repair attempt failed (MongoDB or OKX unreachable, OKX refusing, Ctrl-C); terminal
# for that attempt, not for the gap: the beat sweep retries it with backoff (`retry_at`) until
# BACKFILL_MAX_ATTEMPTS failures make it unrepairable. covered: another feeder of the gap's shard
# published the whole window (`covered_by` names it; docs/redundancy.md), closed before any REST
# call; a partly covered gap is closed `covered` too, its uncovered parts recorded as new gaps
# (`split_into`). filled, unrepairable and covered are final.
GAP_STATUSES = ("open", "filling", "filled", "unrepairable", "failed", "covered")
# The statuses after which nothing repairs a gap again.
GAP_FINAL_STATUSES = ("filled", "unrepairable", "covered")
