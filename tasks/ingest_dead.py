"""Storing a dead letter when the batch, or the handling itself, went wrong (tasks/ingest.py).

A dead letter that cannot be stored because MongoDB and the Redis spool are down keeps its
message (the task retries at the longest backoff). One that cannot be stored because the document
itself is refused (a key or value BSON or JSON cannot hold) would be refused forever: it is
stored again with its args as text, for a human to read, instead of looping on retries.
"""

from __future__ import annotations

import logging
from typing import Any

import pymongo.errors

from tasks.deadletters import DeadLetters

log = logging.getLogger("tasks.ingest")

TEXT_ARGS_MAX = 100_000  # characters of the args kept when the document had to become text


def is_transient(exc: BaseException, transient: tuple[type[BaseException], ...]) -> bool:
    """An error that goes away by itself (a store that is down), as opposed to a refusal."""
    return isinstance(exc, transient) or isinstance(
        exc, (OSError, pymongo.errors.ConnectionFailure)
    )


def put_dead(
    dead: DeadLetters, doc: dict[str, Any], transient: tuple[type[BaseException], ...]
) -> BaseException | None:
    """Store one dead letter. Returns None when stored, else the error that kept it out (the
    caller keeps the message and retries)."""
    try:
        dead.put(doc)
        return None
    except Exception as exc:  # noqa: BLE001 - decided below
        if is_transient(exc, transient):
            log.error("cannot store dead letter %s (%r); keeping the message", doc["_id"], exc)
            return exc
        refused = exc
    text = dict(doc, args=[repr(doc.get("args"))[:TEXT_ARGS_MAX]], unstorable=repr(refused)[:500])
    log.error("dead letter %s refused (%r): stored with its args as text", doc["_id"], refused)
    try:
        dead.put(text)
        return None
    except Exception as exc:  # noqa: BLE001 - nowhere to put it: keep the message
        log.error("cannot store dead letter %s (%r); keeping the message", doc["_id"], exc)
        return exc
