"""The crash tests' pause inside a batch (OKX_TEST_PAUSE_AFTER / OKX_TEST_PAUSE_FILE; never set in
production), out of tasks/ingest.py so the task module stays about its decisions. It wraps the
production writer (state, then history inline or parked), so the crash tests pause the real path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from core.settings import WorkerSettings as Settings


def write_with_test_pause(write: Callable[..., list], settings: Settings) -> Callable[..., list]:
    """OKX_TEST_PAUSE_AFTER=N / OKX_TEST_PAUSE_FILE=F (crash tests only): write the first N
    records; then, if F exists, take it (rename to F.held: only one run ever pauses), create
    F.reached and wait while F.held exists (at most 120 s); then write the rest."""

    def write_many(parts: list[tuple[str, list]]) -> list[dict]:
        left = settings.test_pause_after
        head, tail = [], []
        for kind, records in parts:
            n = min(left, len(records))
            left -= n
            head.append((kind, records[:n]))
            tail.append((kind, records[n:]))
        first = write(head)
        path = settings.test_pause_file
        try:
            os.rename(path, path + ".held")
        except OSError:
            pass  # not armed, or another run took it
        else:
            open(path + ".reached", "w").close()
            deadline = time.monotonic() + 120
            while os.path.exists(path + ".held") and time.monotonic() < deadline:
                time.sleep(0.02)
        rest = write(tail)
        return [
            {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)} for a, b in zip(first, rest)
        ]

    return write_many
