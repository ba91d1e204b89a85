"""The Celery workers of the OKX collector: ingest tasks and the idempotent writers.

`celery -A tasks worker -Q ingest,history,backfill` runs them; `tasks.app` (also `tasks.celery`) is the
Celery application.

Importing `tasks` or one of its pure modules (tasks.documents, tasks.backfill.plan, ...) builds
no Celery app and reads no environment. The app is built, and the task modules that register
the task names of core.contract are imported, on the first access of `tasks.app` or
`tasks.celery` (PEP 562 module `__getattr__`), which is what `celery -A tasks` does.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["app"]

# Imported with the app so that every task name is registered wherever the app is used.
_TASK_MODULES = ("tasks.ingest", "tasks.backfill.tasks", "tasks.derive.tasks")


class _Package(ModuleType):
    """`tasks.app` stays the Celery application, not the `tasks.app` module: the import system
    sets a package's attribute to its submodule once that is imported (from anywhere)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "app" and isinstance(value, ModuleType) and hasattr(value, "app"):
            value = value.app
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in ("app", "celery"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from core.errors import ConfigError

    try:
        celery_app = importlib.import_module("tasks.app").app
        globals()["app"] = celery_app
        for module in _TASK_MODULES:
            importlib.import_module(module)
    except ConfigError as exc:
        _exit_from_celery_command(exc)
        raise
    return celery_app


def _exit_from_celery_command(exc: Exception) -> None:
    """Under `celery -A tasks worker|beat|flower|call`, a setting that cannot work is one line
    and exit 2 (core/cli_errors.py), not the traceback Celery prints for any exception while it
    loads an app; elsewhere (tests, a program importing tasks) the ConfigError propagates."""
    click = sys.modules.get("click")
    if click is None or click.get_current_context(silent=True) is None:
        return
    from core.cli_errors import EXIT_USAGE, describe, report

    verdict = describe(exc)
    assert verdict is not None  # a ConfigError always has its line
    report("celery -A tasks", verdict[1])
    raise SystemExit(EXIT_USAGE) from None
