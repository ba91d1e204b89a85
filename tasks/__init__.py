"""The Celery workers of the OKX collector: ingest tasks and the idempotent writers.

`celery -A tasks worker -Q ingest,backfill` runs them; `tasks.app` (also `tasks.celery`) is the
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
_TASK_MODULES = ("tasks.ingest", "tasks.backfill.tasks")


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
    celery_app = importlib.import_module("tasks.app").app
    globals()["app"] = celery_app
    for module in _TASK_MODULES:
        importlib.import_module(module)
    return celery_app
