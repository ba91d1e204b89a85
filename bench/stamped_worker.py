"""The production workers (`tasks`) with bench/write_stamp.py installed: Redis's own time in each
state hash, for the latency figure. `celery -A bench.stamped_worker worker ...` is what bench.e2e
runs against a real MongoDB (MONGODB_URI) or the stand-in; `--mongo sink` runs bench.sink_worker,
which installs the same stamp."""

from __future__ import annotations

from bench import write_stamp
from tasks import app  # noqa: F401  (the production app and its tasks)

write_stamp.install()
