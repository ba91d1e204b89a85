"""The worker's garbage-collector threshold (WORKER_GC_GEN0): decoded batches are many containers.

A books batch decodes into ~100 lists per record (each level is one), all alive until the task
ends and then freed by reference counting, never cyclic. With Python's default (a young-
generation collection every 700 net allocations) the collector walks them again and again while
the batch is decoded and stored: bench/redundant_workers.py measured more than half of a
duplicate batch's decode inside collections, and with a threshold of 50,000 one worker's CPU per
message a third lower with large batches, less with small ones (docs/redundancy-workers.md).
Cyclic garbage is still collected, only less often.

Set at `worker_init` (the main process: the solo pool's, and prefork children inherit it at
fork) and again at `worker_process_init` (a child started by a later pool restart).
"""

from __future__ import annotations

import gc
from typing import Any

from celery.signals import worker_init, worker_process_init

from core import settings as settings_mod

PYTHON_DEFAULT_GEN0 = 700


def tune(gen0: int) -> None:
    """Set the young generation's threshold (0: Python's default); the older ones are kept."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0 if gen0 > 0 else PYTHON_DEFAULT_GEN0, gen1, gen2)


@worker_init.connect
@worker_process_init.connect
def _tune_worker(**_: Any) -> None:
    tune(settings_mod.current().gc_gen0)
