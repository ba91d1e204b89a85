"""Every feeder thread runs under supervision: a bug, or anything in a frame's content that the
parser let through, must never end a thread or the process.

`RestartPolicy` is the pure part: after a crash it says how long to wait (okx/backoff.py's
formula) and whether the thread is restarting in a loop (more than `loop_restarts` crashes in
`loop_window_s`). `Supervisor.run(name, body, ...)` is the thin wrapper a thread's `run()` calls:
it calls `body()` until it returns normally or the feeder stops; an unexpected exception is
logged with its traceback (once per `LOG_EVERY_S` per thread and exception type: a crash loop
does not flood the log), counted, handed to `on_crash` (a reader turns it into a lost connection,
so its window becomes a gap), and `body()` is called again after the backoff.

Fault injection (tests only): `inject(name, exc)` hands an exception to the thread of that name;
the thread raises it at its next `checkpoint()`, which each thread's loop calls once per cycle (an
attribute read when nothing is injected). No environment variable is involved.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from okx.backoff import Backoff

log = logging.getLogger("collector.supervisor")

LOG_EVERY_S = 30.0  # a repeating crash: one traceback per thread and exception type per 30 s
HEALTHY_RUN_S = 30.0  # a body that ran this long before crashing starts the backoff afresh


@dataclass
class RestartPolicy:
    """When to restart a crashed thread, and whether it is crashing in a loop. Pure."""

    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, factor=2.0, cap=10.0))
    loop_restarts: int = 5
    loop_window_s: float = 60.0
    crashes: deque[float] = field(default_factory=deque)

    def on_crash(self, now: float, ran_s: float, rng: random.Random) -> float:
        """A crash at `now` after the body ran `ran_s`: the delay before the restart."""
        self.crashes.append(now)
        self._expire(now)
        if ran_s >= HEALTHY_RUN_S:
            self.backoff.reset()
        return self.backoff.next_delay(rng)

    def looping(self, now: float) -> bool:
        self._expire(now)
        return len(self.crashes) > self.loop_restarts

    def _expire(self, now: float) -> None:
        while self.crashes and self.crashes[0] <= now - self.loop_window_s:
            self.crashes.popleft()


@dataclass(frozen=True, slots=True)
class ThreadSnapshot:
    """One supervised thread, for /healthz, /metrics and the heartbeat."""

    name: str
    up: bool  # running its body (False: ended, or waiting to be restarted)
    restarts: int
    looping: bool  # restarting in a loop (see RestartPolicy)
    last_error: str | None = None
    last_crash_age_s: float | None = None  # seconds since the last crash (None: never)

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "up": self.up,
            "restarts": self.restarts,
            "looping": self.looping,
            "last_error": self.last_error,
            "last_crash_age_s": None
            if self.last_crash_age_s is None
            else round(self.last_crash_age_s, 1),
        }


class _Unit:
    """The supervisor's record of one thread."""

    def __init__(self, name: str, policy: RestartPolicy, thread: threading.Thread | None) -> None:
        self.name = name
        self.policy = policy
        self.thread = thread
        self.up = False
        self.ended = False  # the body returned normally (or the feeder stopped)
        self.restarts = 0
        self.last_error: str | None = None
        self.last_crash: float | None = None
        self.fault: BaseException | None = None  # injected by a test, raised at checkpoint()
        self.logged: dict[str, float] = {}  # exception type -> when its traceback was logged
        self.reported_loop = False


class Supervisor:
    def __init__(
        self,
        stopping: threading.Event,
        *,
        policy: Callable[[], RestartPolicy] = RestartPolicy,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stopping = stopping
        self._policy = policy
        self._rng = rng or random.Random()
        self._clock = clock
        self._units: dict[str, _Unit] = {}
        self._lock = threading.Lock()

    def _unit(self, name: str) -> _Unit:
        with self._lock:
            unit = self._units.get(name)
            if unit is None:
                unit = self._units[name] = _Unit(name, self._policy(), threading.current_thread())
            return unit

    def run(
        self,
        name: str,
        body: Callable[[], None],
        *,
        on_crash: Callable[[BaseException], None] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        """Call `body` until it returns or `stopping` (default: the feeder's) is set; restart it
        after an unexpected exception. Called from the supervised thread itself."""
        stop = stopping or self.stopping
        unit = self._unit(name)
        unit.thread = threading.current_thread()
        while True:
            unit.up = True
            started = self._clock()
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - the point of a supervisor
                # BaseException too: a SystemExit or GeneratorExit escaping a library must not
                # end the thread either (KeyboardInterrupt reaches only the main thread).
                unit.up = False
                now = self._clock()
                unit.last_crash = now
                self._crashed(unit, exc, now)
                if on_crash is not None:
                    try:
                        on_crash(exc)
                    except Exception:  # noqa: BLE001 - a broken clean-up must not end it either
                        log.exception("thread %s: clean-up after the crash failed", name)
                delay = unit.policy.on_crash(now, now - started, self._rng)
                self._report_loop(unit, now)
                if stop.wait(delay):
                    break
                unit.restarts += 1
                log.warning("thread %s: restarted (restart %d)", name, unit.restarts)
                continue
            break
        unit.up = False
        unit.ended = True

    def _crashed(self, unit: _Unit, exc: BaseException, now: float) -> None:
        kind = type(exc).__name__
        unit.last_error = f"{kind}: {str(exc)[:200]}"
        last = unit.logged.get(kind)
        if last is None or now - last >= LOG_EVERY_S:
            unit.logged[kind] = now
            log.error("thread %s crashed; restarting it", unit.name, exc_info=exc)
        else:
            log.debug("thread %s crashed again: %s", unit.name, unit.last_error)

    def _report_loop(self, unit: _Unit, now: float) -> None:
        looping = unit.policy.looping(now)
        if looping and not unit.reported_loop:
            p = unit.policy
            log.error(
                "thread %s is restarting in a loop: %d crashes in %.0f s (last: %s)",
                unit.name,
                len(p.crashes),
                p.loop_window_s,
                unit.last_error,
            )
        unit.reported_loop = looping

    # ----- fault injection (tests) ---------------------------------------------------------------

    def inject(self, name: str, exc: BaseException) -> None:
        """Make the thread `name` raise `exc` at its next checkpoint (tests only)."""
        self._unit(name).fault = exc

    def checkpoint(self, name: str) -> None:
        unit = self._units.get(name)
        if unit is not None and unit.fault is not None:
            exc, unit.fault = unit.fault, None
            raise exc

    def handle(self, name: str) -> Checkpoint:
        """A bound checkpoint for a hot loop: one attribute read per call."""
        return Checkpoint(self._unit(name))

    # ----- what health reads ---------------------------------------------------------------------

    def snapshot(self) -> tuple[ThreadSnapshot, ...]:
        now = self._clock()
        with self._lock:
            units = list(self._units.values())
        out = []
        for u in units:
            dead = u.thread is not None and not u.thread.is_alive() and not u.ended
            out.append(
                ThreadSnapshot(
                    name=u.name,
                    up=u.up and not dead,
                    restarts=u.restarts,
                    looping=u.policy.looping(now),
                    last_error=u.last_error,
                    last_crash_age_s=None if u.last_crash is None else now - u.last_crash,
                )
            )
        return tuple(out)

    def forget(self, name: str) -> None:
        """A thread that ended for good (a retired connection): no longer reported."""
        with self._lock:
            self._units.pop(name, None)


class Checkpoint:
    """`supervisor.checkpoint(name)` bound to one thread's record."""

    __slots__ = ("_unit",)

    def __init__(self, unit: _Unit) -> None:
        self._unit = unit

    def __call__(self) -> None:
        unit = self._unit
        if unit.fault is not None:
            exc, unit.fault = unit.fault, None
            raise exc
