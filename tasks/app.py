"""The Celery application. `celery -A tasks worker` (or `-A tasks.app`) finds it here."""

from __future__ import annotations

from typing import Any

import orjson
from celery import Celery
from kombu.serialization import registry
from kombu.utils import json as kombu_json


def _json_loads(s: Any) -> Any:
    """kombu's JSON decoder with orjson for plain payloads.

    The wire format stays JSON (the contract, `celery call`); only decoding on the worker gets
    faster: stdlib json with kombu's per-object hook spent ~7 ms on a 500-record books batch,
    most of one task's cost (bench/workers.py). Anything orjson refuses or that carries kombu's
    typed values ({"__type__": ...}) goes to kombu's own decoder, so results are identical.
    """
    if isinstance(s, (memoryview, bytearray)):
        s = bytes(s)
    marker = b"__type__" if isinstance(s, bytes) else "__type__"
    if marker not in s:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:  # NaN, huge integers...: stdlib json accepts them
            pass
    return kombu_json.loads(s)


registry.register(
    "json", kombu_json.dumps, _json_loads, content_type="application/json", content_encoding="utf-8"
)

app = Celery("tasks")
app.config_from_object("celeryconfig")
# The task modules; they import `app` from here, so they are listed, not imported, at this point.
app.conf.imports = ("tasks.ingest", "tasks.backfill.tasks", "tasks.derive.tasks")

# One structured, redacted log line per event in workers and beat (a Celery logging signal).
import tasks.logging_setup  # noqa: E402,F401
import tasks.worker_gc  # noqa: E402,F401  (the GC threshold of worker processes)
