"""The history path: MongoDB history on its own path beside the Redis state (docs/history-path.md).

breaker.py   the shared circuit breaker (closed / open / half-open), state in Redis
pending.py   parked history in Redis, bounded in bytes (HISTORY_PENDING_MAX_BYTES)
overflow.py  what the bound drops becomes recorded gaps (repairable kinds are backfilled)
path.py      one batch: state first, then history inline or parked (used by tasks/ingest.py)
drain.py     parked history into MongoDB, and the breaker's probe
runtime.py   this process's breaker, parking lot and broker client; the drain task
metrics.py   breaker state and backlog bytes for /metrics (read from Redis at scrape time)
"""
