"""The worker's GC threshold (tasks/worker_gc.py): set from WORKER_GC_GEN0, the older
generations' thresholds kept, 0 = Python's default."""

from __future__ import annotations

import gc
import weakref

import pytest

from core import settings as settings_mod
from core.settings import WorkerSettings
from tasks import worker_gc


@pytest.fixture
def restore_gc():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
    settings_mod.use(None)


def test_the_worker_signals_set_the_young_generation_from_the_setting(restore_gc):
    gc.set_threshold(700, 11, 12)
    settings_mod.use(WorkerSettings.from_env({"WORKER_GC_GEN0": "20000"}))
    worker_gc._tune_worker(sender=None)
    assert gc.get_threshold() == (20000, 11, 12)
    settings_mod.use(WorkerSettings.from_env({"WORKER_GC_GEN0": "0"}))
    worker_gc._tune_worker(sender=None)
    assert gc.get_threshold() == (700, 11, 12)
    assert WorkerSettings.from_env({}).gc_gen0 == 50_000


def test_it_is_connected_to_both_worker_signals():
    from celery.signals import worker_init, worker_process_init

    def target(ref):  # celery keeps weak references to receivers by default
        return ref() if isinstance(ref, weakref.ReferenceType) else ref

    for signal in (worker_init, worker_process_init):
        assert worker_gc._tune_worker in [target(ref) for _, ref in signal.receivers]
