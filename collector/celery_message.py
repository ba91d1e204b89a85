"""Celery task messages for a Redis broker, built directly (pure: no I/O, no Celery import).

The feeder sends every batch as a Celery task by name. Going through `app.send_task` and kombu's
producer cost ~0.3 ms of CPU per task on this machine (headers built through several layers, a
new redis client object per publish, queue declarations): at a few hundred small tasks a second
the publisher thread was busy most of the time and records waited behind it (socket -> publish
p50 2.5-5 ms at 2,000 msg/s, bench/e2e.py). The message itself is simple and documented
(Celery's "Message Protocol", version 2, inside kombu's Redis envelope), so the feeder builds
it here and LPUSHes it itself: a few microseconds per task, and LPUSH's reply (the queue's
length) tells the publisher how far behind the workers are, for free.

What a worker receives is what `send_task(name, args=[batch], queue=q)` would have produced,
with the default exchange (routing key = queue name, kombu's key for priority 0 is the queue
name itself), JSON body, no result wanted. tests/test_celery_message.py compares it with
Celery's own message and runs it through a real worker.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid

import orjson

# The body's third element: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"feeder{os.getpid()}@{socket.gethostname()}"
_HOLE = "BODY"  # where the body goes (a plain token: JSON-encoded as itself)


def task_message(
    name: str,
    args: list,
    queue: str,
    *,
    argsrepr: str,
    task_id: str | None = None,
    kwargs: dict | None = None,
    origin: str = _ORIGIN,
) -> bytes:
    """One task message, as kombu's Redis transport stores it in the list named `queue`."""
    head, tail = message_parts(
        name, queue, argsrepr=argsrepr, task_id=task_id, kwargs=kwargs, origin=origin
    )
    body = orjson.dumps([args, kwargs or {}, _EMBED])
    return head + base64.b64encode(body) + tail


def body_tail(kwargs: dict | None = None) -> bytes:
    """What follows the args in a task's body: `,<kwargs>,<embed>]` (the body is the JSON list
    [args, kwargs, embed])."""
    return b"," + orjson.dumps(kwargs or {}) + b"," + orjson.dumps(_EMBED) + b"]"


def message_parts(
    name: str,
    queue: str,
    *,
    argsrepr: str,
    task_id: str | None = None,
    kwargs: dict | None = None,
    origin: str = _ORIGIN,
) -> tuple[bytes, bytes]:
    """The message around its body: head + base64(body) + tail is the whole message. Apart so
    that the body can be put together elsewhere (collector/claims.py: inside Redis)."""
    tid = task_id or str(uuid.uuid4())
    message = orjson.dumps(
        {
            "body": _HOLE,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": name,
                "id": tid,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": tid,
                "parent_id": None,
                "argsrepr": argsrepr,
                "kwargsrepr": "{}" if not kwargs else repr(kwargs)[:200],
                "origin": origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": tid,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
    # "body" is the first key: the message starts with {"body":"<hole>"
    cut = len(b'{"body":"')
    assert message[cut : cut + len(_HOLE)] == _HOLE.encode()
    return message[:cut], message[cut + len(_HOLE) :]
