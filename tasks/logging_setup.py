"""Structured logs for Celery workers and beat (core/logs.py), hooked in by a signal.

Connecting `setup_logging` tells Celery not to configure logging itself; we install the one
structured, redacted handler instead (the `-l/--loglevel` option still sets the level). Inside a
task, each line also carries `task=` and `task_id=`, as Celery's own task formatter would.

Below DEBUG, the two lines Celery writes for every successful task ("Task ... received",
"Task ... succeeded in ...") are left out: at hundreds of ingest tasks a minute they would bury
every other event, and Flower lists each task anyway. Retries, failures and everything else stay.

tasks/app.py imports this module, so every process that loads the app (worker, beat, Flower,
`celery call`) gets the hook before Celery sets up logging.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging

from core import logs


class TaskFields(logging.Filter):
    """Add the running task's name and id to every record logged while a task runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery._state import get_current_task

        task = get_current_task()
        if task is not None and task.request.id:
            record.task = task.name
            record.task_id = task.request.id
        return True


class QuietSuccess(logging.Filter):
    """Drop Celery's per-task success line (its format string identifies it exactly)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.app.trace import LOG_SUCCESS

        return record.msg is not LOG_SUCCESS


@setup_logging.connect
def _structured_logging(loglevel: Any = None, **_: Any) -> None:
    from core.settings import load_logging

    configured = load_logging()
    handler = logs.setup(loglevel or logging.INFO, configured.fmt, secrets=configured.secrets)
    handler.addFilter(TaskFields())
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
        logging.getLogger("celery.app.trace").addFilter(QuietSuccess())
