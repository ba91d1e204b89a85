"""Celery configuration for the OKX collector's workers and beat (`celery -A tasks ...`).

Values come from core.settings.current() (WorkerSettings; core/settings.py is the only reader of
the environment). Each setting says why it has its value; the no-data-loss ones follow /docs
celery-conventions (measured on Celery / kombu 5.7 with a Redis broker).
"""

from __future__ import annotations

import ssl

from core import keys
from core.contract import (
    AUDIT_TASK,
    BACKFILL_ALIAS_TASK,
    BACKFILL_QUEUE,
    BACKFILL_TASK_GLOB,
    DERIVE_TASK,
    FILLS_TASK,
    HISTORY_DRAIN_TASK,
    HISTORY_QUEUE,
    HISTORY_TASK_GLOB,
    INGEST_QUEUE,
    INGEST_TASK_GLOB,
    SWEEP_TASK,
)
from core.settings import current

_s = current()

# ----- broker ---------------------------------------------------------------------------------------
broker_url = _s.redis_url
# Heroku Key-Value Store is TLS-only (rediss://) with a self-signed chain.
if broker_url.startswith("rediss://"):
    broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_NONE}
# kombu's Redis transport with one reused client for the ack bookkeeping (see the module).
broker_transport = "tasks.broker_transport:Transport"
broker_transport_options = {
    # The clock starts when a worker *fetches* a message; it must outlast the prefetch wait + the
    # longest retry countdown (INGEST_RETRY_CAP_S, 300 s) + the run time (hard limit 90 s).
    # Only after it expires does an unacked message of a dead worker return to the queue.
    "visibility_timeout": _s.visibility_timeout_s,
    # How often the worker sweeps for such expired messages (interval x throttle seconds; kombu's
    # default is 10 x 10). Tests that kill a whole worker shorten these.
    "unacked_restore_interval": _s.unacked_restore_interval_s,
    "unacked_restore_throttle": _s.unacked_restore_throttle,
}
# 5.7 defaults to None (and Celery 6 changes its meaning): say it. A worker started while Redis
# restarts waits for it instead of exiting.
broker_connection_retry_on_startup = True
# Default 10 connections per process is enough: one consumer and a few producers (retries).

# ----- no result backend -------------------------------------------------------------------------------
# Nothing reads task results; a backend would cost a Redis write and a key per task.
result_backend = None
task_ignore_result = True

# ----- serialisation --------------------------------------------------------------------------------------
# JSON is the contract (the feeder and `celery call` both send JSON); accept nothing else.
task_serializer = "json"
accept_content = ["json"]

# ----- at-least-once delivery -------------------------------------------------------------------------------
# Ack after the task ran (writes done), not before: a crash mid-task leaves the message queued.
task_acks_late = True
# A killed pool child (OOM, SIGKILL) would otherwise have its message acked and lost: requeue it.
# Safe because every write is idempotent (natural _id, versioned Lua, deduplicated order<N>).
task_reject_on_worker_lost = True
# If the broker connection drops, stop running tasks whose messages will be redelivered anyway,
# rather than let them run on beside their redelivered copy (the default in Celery 6).
worker_cancel_long_running_tasks_on_connection_loss = True

# ----- shutdown (Heroku sends SIGTERM to every process, SIGKILL 30 s later) -----------------------------
# Run the worker with REMAP_SIGTERM=SIGQUIT: SIGTERM then starts Celery's cold shutdown, which
# begins with this soft phase (running tasks may finish) and then restores unacked messages to
# the queue before exiting. It waits the full time even when idle; 15 s leaves Heroku's 30 s grace
# room for the restore itself on a loaded machine (20 s measured 22 s, once over 30 s).
worker_soft_shutdown_timeout = _s.soft_shutdown_s
# Also do the soft phase when idle, so reserved (prefetched, ETA/retry) messages get restored
# cleanly instead of waiting out the visibility timeout.
worker_enable_soft_shutdown_on_idle = True

# ----- prefetch -----------------------------------------------------------------------------------------------
# Window = multiplier x concurrency. Ingest tasks are short and many: 4 keeps the pool busy
# without hoarding. Backfill workers run with --prefetch-multiplier 1 (long tasks). Never 0 with
# late ack on Redis: unbounded prefetch can outlive the visibility timeout and run twice.
worker_prefetch_multiplier = _s.prefetch_multiplier

# ----- time limits ---------------------------------------------------------------------------------------------
# Defaults for every task (backfill pages are slow); the ingest tasks set their own, shorter
# ones (INGEST_SOFT_TIME_LIMIT 60 s / INGEST_TIME_LIMIT 90 s). The soft limit raises inside the
# task (retried: writes are idempotent); the hard limit replaces the child (requeued: reject on
# worker lost). Both only work in the prefork pool.
task_soft_time_limit = 240
task_time_limit = 300

# ----- publishing (retries the worker itself sends, dead-letter replay) -----------------------------------------
# 5.7 retries a publish 3 times in about 1 s and then raises. A task's self.retry() must not fail
# over a short broker blip, or the batch ends up dead-lettered: retry for up to ~30 s.
task_publish_retry = True
task_publish_retry_policy = {
    "max_retries": 12,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 3.0,
}

# ----- queues and routes --------------------------------------------------------------------------------------------
# Short ingest tasks and long backfill tasks get separate queues (and Procfile processes), so a
# backfill never delays live data. A task without a route goes to `ingest`, which every worker
# consumes, rather than to a `celery` queue nobody reads.
task_default_queue = INGEST_QUEUE
task_routes = {
    INGEST_TASK_GLOB: {"queue": INGEST_QUEUE},
    BACKFILL_TASK_GLOB: {"queue": BACKFILL_QUEUE},
    BACKFILL_ALIAS_TASK: {"queue": BACKFILL_QUEUE},  # `celery -A tasks call backfill`
    # parked history drained into MongoDB (docs/history-path.md): its own queue, so a drain
    # waiting on a slow MongoDB is never in front of live batches
    HISTORY_TASK_GLOB: {"queue": HISTORY_QUEUE},
    DERIVE_TASK: {"queue": BACKFILL_QUEUE},  # candles and VWAP from stored trades
}
task_create_missing_queues = True

# ----- events / monitoring -------------------------------------------------------------------------------------------
# The Procfile's worker runs with -E so Flower's task list fills from the start (Flower would
# otherwise switch events on only once it runs); tests and benches leave them off.
worker_send_task_events = False
task_send_sent_event = False

# ----- beat: RedBeat (schedule and lock in Redis; exactly one beat process) ------------------------------------
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _s.redis_url  # explicit: the broker_url fallback is deprecated (gone in 2.5)
redbeat_key_prefix = keys.REDBEAT_PREFIX
# The lock says "a beat is running". RedBeat's default (25 min) would keep a SIGKILLed beat's
# replacement idle that long; the live beat renews it every loop (at most beat_max_loop_interval).
beat_max_loop_interval = 30
redbeat_lock_timeout = 90
# Periodic backfill work (docs/backfill.md). Every entry expires before its next run: a backlog
# (workers down) never piles up runs of the same job; the next one does the work anyway.
beat_schedule: dict = {
    # open gaps whose task was lost or whose worker died, stale watermarks, dead feeders
    "backfill-sweep": {
        "task": SWEEP_TASK,
        "schedule": _s.backfill_sweep_s,
        "options": {"queue": BACKFILL_QUEUE, "expires": _s.backfill_sweep_s * 0.9},
    },
    # stored trades against REST history, per instrument, over a trailing window
    "trades-audit": {
        "task": AUDIT_TASK,
        "schedule": _s.audit_every_s,
        "options": {"queue": BACKFILL_QUEUE, "expires": _s.audit_every_s * 0.9},
    },
    # fills have no live source (the WS fills channel needs VIP4+): page them from REST
    "fills-sync": {
        "task": FILLS_TASK,
        "schedule": _s.fills_every_s,
        "options": {"queue": BACKFILL_QUEUE, "expires": _s.fills_every_s * 0.9},
    },
    # the safety net of the history drain: ingest tasks send it when the breaker's probe is due
    # or history waits, but with no live batches (feeder stopped) only this one does
    "history-drain": {
        "task": HISTORY_DRAIN_TASK,
        "schedule": _s.history_drain_every_s,
        "options": {"queue": HISTORY_QUEUE, "expires": _s.history_drain_every_s * 0.9},
    },
    # candles from trades and the rolling VWAP of the minutes stored trades made dirty
    "derive-rebuild": {
        "task": DERIVE_TASK,
        "schedule": _s.derive_every_s,
        "options": {"queue": BACKFILL_QUEUE, "expires": _s.derive_every_s * 0.9},
    },
}

timezone = "UTC"
enable_utc = True
