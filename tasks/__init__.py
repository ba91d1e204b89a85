"""The Celery workers of the OKX collector: ingest tasks and the idempotent writers.

`celery -A tasks worker -Q ingest,backfill` runs them; `tasks.app` is the Celery application.
"""
from tasks.app import app  # noqa: F401  (re-exported: `celery -A tasks`)
from tasks import ingest  # noqa: E402,F401  (registers the task names of core.contract)
from tasks.backfill import tasks as _backfill_tasks  # noqa: E402,F401  (backfill task names)

__all__ = ["app"]
