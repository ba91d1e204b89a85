"""The bounded outbox between the socket readers and the publisher thread.

Readers `put` records (never blocking, never waiting on the broker); the publisher `take`s up to
batch_max of one kind whenever it is free, so batches are small when quiet and large when busy:
no flush timer. A socket reader brackets the frames of one `recv` with `hold()` / `release()`:
the publisher is woken once, when no reader is in the middle of a burst, and takes the whole
burst as one task (waking it at the first record would split the burst: under the GIL the
publisher cannot run before the reader yields anyway, and then takes only part of it).

While the broker is down the publisher puts failed batches back; past `buffer_max` records of
one kind the oldest are dropped and their window is accumulated per (channel, instId) into an
overflow gap (`drain_overflow`), never lost silently.

Item layout (a tuple, for speed): (t_recv, channel, instId, ts_ms, id, payload).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from core.contract import KINDS
from core.gaps import Gap

SETTLE_MAX_S = 0.002  # longest wait for another reader's burst before publishing


class Outbox:
    def __init__(
        self, batch_max: int = 500, buffer_max: int = 200_000, settle_max_s: float = SETTLE_MAX_S
    ) -> None:
        self.batch_max = batch_max
        self.buffer_max = buffer_max
        self.settle_max_s = settle_max_s
        self.queues: dict[str, deque] = {k: deque() for k in KINDS}
        self._wake = threading.Event()
        self._waiting = False
        self._lock = threading.Lock()
        self._overflow: dict[tuple, list] = {}  # (kind, channel, instId) -> [n, ts0, ts1, id0, id1]
        self._holders: set = set()  # readers in the middle of a burst
        self.dropped = 0
        self.put_count = 0

    def put(
        self, kind: str, channel: str, inst_id: str, ts: int, rid: str, payload: dict, t_recv: float
    ) -> None:
        q = self.queues[kind]
        q.append((t_recv, channel, inst_id, ts, rid, payload))
        self.put_count += 1
        if len(q) > self.buffer_max:
            self._trim(kind)
        if self._waiting and not self._holders:
            self._waiting = False
            self._wake.set()

    # A set of readers rather than a counter: set.add/discard are atomic under the GIL, `+= 1`
    # from two reader threads is not.
    def hold(self, reader: object) -> None:
        """`reader` starts putting the records of one burst: defer the publisher's wake-up."""
        self._holders.add(reader)

    def release(self, reader: object) -> None:
        """The burst is queued: wake the publisher if no other reader is mid-burst."""
        self._holders.discard(reader)
        if self._waiting and not self._holders:
            self._waiting = False
            self._wake.set()

    def _trim(self, kind: str) -> None:
        q = self.queues[kind]
        # Drop in chunks (1% of the bound) so a broker outage costs one trim per many puts.
        target = self.buffer_max - max(1, self.buffer_max // 100)
        with self._lock:
            ov = self._overflow
            while len(q) > target:
                try:
                    _t, channel, inst_id, ts, rid, payload = q.popleft()
                except IndexError:
                    break
                self.dropped += 1
                first_id = rid
                if kind == "trades" and rid:
                    first_id = str(int(rid) - int(payload.get("count") or 1) + 1)
                acc = ov.get((kind, channel, inst_id))
                if acc is None:
                    ov[(kind, channel, inst_id)] = [1, ts, ts, first_id, rid]
                else:
                    acc[0] += 1
                    if ts < acc[1]:
                        acc[1] = ts
                    if ts > acc[2]:
                        acc[2] = ts
                    if rid and acc[3] and _lt(first_id, acc[3]):
                        acc[3] = first_id
                    if rid and acc[4] and _lt(acc[4], rid):
                        acc[4] = rid

    def drain_overflow(self) -> list[Gap]:
        """Gap records for everything dropped since the last call."""
        with self._lock:
            ov, self._overflow = self._overflow, {}
        gaps = []
        for (kind, channel, inst_id), (n, ts0, ts1, id0, id1) in ov.items():
            start_id = end_id = ""
            if kind == "trades" and id0 and id1:
                start_id, end_id = str(int(id0) - 1), str(int(id1) + 1)  # exclusive bounds
            elif id0:
                start_id, end_id = id0, id1
            gaps.append(
                Gap(
                    channel,
                    inst_id,
                    ts0,
                    ts1,
                    "publish_overflow",
                    start_id=start_id,
                    end_id=end_id,
                    reason=f"broker unavailable: {n} {kind} records dropped past the outbox bound",
                )
            )
        return gaps

    def take(self, kind: str, n: int, received_by: float | None = None) -> list:
        """Up to `n` records of `kind`, oldest first; with `received_by` (a monotonic time)
        only those received by then."""
        q = self.queues[kind]
        if not q:
            return []
        if received_by is not None:
            due: list = []
            while q and len(due) < n and q[0][0] <= received_by:
                due.append(q.popleft())
            return due
        out = []
        pop = q.popleft
        try:
            for _ in range(min(n, len(q))):
                out.append(pop())
        except IndexError:
            pass
        return out

    def put_back(self, kind: str, items: list) -> None:
        """A batch could not be published: back to the front, then enforce the bound."""
        q = self.queues[kind]
        q.extendleft(reversed(items))
        if len(q) > self.buffer_max:
            self._trim(kind)

    def oldest(self) -> float | None:
        """When the oldest record queued was received (monotonic), or None."""
        heads = []
        for q in self.queues.values():
            try:
                heads.append(q[0][0])
            except IndexError:
                continue
        return min(heads, default=None)

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def backlog_by_kind(self) -> dict[str, int]:
        return {k: len(q) for k, q in self.queues.items()}

    def wait(self, timeout: float) -> None:
        """Block until something is put (or timeout). Only the publisher thread calls this."""
        self._waiting = True
        if any(self.queues.values()):
            self._waiting = False
            return
        if not self._wake.wait(timeout):
            self._waiting = False
            return
        self._wake.clear()
        self._waiting = False
        self._settle()

    def _settle(self) -> None:
        """Records were just queued. Before the publisher takes them, let a reader that holds a
        burst of its own finish it: the sockets often deliver together (a trade burst on one,
        the book and ticker of the same moment on another), and one task for both is stored in
        one worker round trip instead of two tasks queued one behind the other."""
        time.sleep(0)  # yield the GIL: a reader waiting for it takes its burst
        if not self._holders:
            return
        self._waiting = True
        if self._holders:  # (release() wakes us only while _waiting is set)
            self._wake.wait(self.settle_max_s)
        self._wake.clear()
        self._waiting = False

    def wake(self) -> None:
        self._wake.set()


def _lt(a: str, b: str) -> bool:
    try:
        return int(a) < int(b)
    except ValueError:
        return a < b
