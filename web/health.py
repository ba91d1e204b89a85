"""One verdict from the feeder's view and the workers' view (GET /api/v1/health).

The feeder's view is what `python -m collector status` reads (collector/status.py): every
feeder's heartbeat, with its own verdict (snapshot.problems(), as its /healthz: connections down,
dead or crash-looping threads, silent subscriptions, the broker, the parse-error rate), and the
broker backlog. The workers' view is which Celery workers answer a ping over the broker, asked by
a background thread (`WorkerProbe`) so a health request never waits for the broadcast; and this
process's own parts: MongoDB reachable, the Flower child up.

    down       nothing is being collected or stored: no live feeder, no worker answering, or the
               ledger's Redis unreachable
    degraded   something needs a look: any problem the feeder reports (a dead, stalled or
               restarting part), a queue backlog, MongoDB unreachable, Flower down or restarting
    ok         none of these

`verdict` is pure; the probes do the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("web.health")

PROBE_EVERY_S = 5.0
PING_TIMEOUT_S = 1.0


@dataclass
class WorkersView:
    """The last answer to the workers' ping; `checked_ms` None: never asked yet."""

    online: tuple[str, ...] = ()
    checked_ms: int | None = None
    error: str = ""
    mongo_ok: bool | None = None
    mongo_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "online": list(self.online),
            "count": len(self.online),
            "checked_ms": self.checked_ms,
            "error": self.error or None,
            "mongodb": "ok" if self.mongo_ok else ("unknown" if self.mongo_ok is None else "down"),
        }


def connections(feeders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feeders' connections in the API's shape: name, state, subscriptions with age_ms."""
    out = []
    for f in feeders:
        for c in f.get("connections", ()):
            subs = []
            for key, s in sorted(c.get("subscriptions", {}).items()):
                channel, _, inst = key.partition(":")
                age = s.get("age_s")
                subs.append(
                    {
                        "channel": channel,
                        "instId": inst,
                        "age_ms": None if age is None else int(age * 1000),
                        "status": s.get("status"),
                    }
                )
            out.append(
                {
                    "feeder": f["id"],
                    "name": c.get("name", c.get("endpoint", "")),
                    "state": c.get("state", ""),
                    "reconnects": c.get("reconnects", 0),
                    "subscriptions": subs,
                }
            )
    return out


def verdict(
    status: dict[str, Any] | None,
    workers: WorkersView,
    flower: dict[str, Any] | None,
    redis_error: str = "",
) -> tuple[str, list[str]]:
    """(verdict, reasons) from the feeder status (collector.status), workers and Flower."""
    down: list[str] = []
    degraded: list[str] = []
    if status is None:
        down.append(f"ledger Redis unreachable: {redis_error or 'no answer'}")
    else:
        if not any(f.get("alive") for f in status["feeders"]):
            down.append("no live feeder heartbeat: nothing is being collected")
        degraded += status["problems"]
    if workers.checked_ms is None:
        degraded.append("workers not checked yet")
    elif workers.error:
        down.append(f"workers: ping failed ({workers.error})")
    elif not workers.online:
        down.append("no Celery worker answers a ping: nothing is being stored")
    if workers.mongo_ok is False:
        degraded.append(f"MongoDB unreachable: {workers.mongo_error}")
    if flower is not None and flower.get("state") != "up":
        degraded.append(f"flower is {flower.get('state')} ({flower.get('restarts', 0)} restarts)")
    if down:
        return "down", down + degraded
    return ("degraded" if degraded else "ok"), degraded


@dataclass
class WorkerProbe:
    """Pings the Celery workers and MongoDB every PROBE_EVERY_S on a daemon thread."""

    ping: Callable[[], list[str]]  # hostnames of the workers that answered
    mongo_ping: Callable[[], None]
    every_s: float = PROBE_EVERY_S
    view: WorkersView = field(default_factory=WorkersView)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check_once(self) -> WorkersView:
        view = WorkersView()
        try:
            view.online = tuple(sorted(self.ping()))
        except Exception as exc:  # noqa: BLE001 - any broker failure is a health fact, not a crash
            view.error = type(exc).__name__
        try:
            self.mongo_ping()
            view.mongo_ok = True
        except Exception as exc:  # noqa: BLE001 - same: reported, never raised
            view.mongo_ok, view.mongo_error = False, type(exc).__name__
        view.checked_ms = int(time.time() * 1000)
        self.view = view
        return view

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - the probe thread must outlive any surprise
                log.exception("health probe failed")
            self._stop.wait(self.every_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def celery_ping(timeout_s: float = PING_TIMEOUT_S) -> list[str]:
    """Hostnames of the Celery workers that answer a broadcast ping within `timeout_s`."""
    import tasks

    replies = tasks.app.control.ping(timeout=timeout_s) or []
    return [name for reply in replies for name in reply]
