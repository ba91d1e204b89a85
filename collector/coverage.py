"""What this feeder covered, per (channel, instId): intervals of published records. Pure.

The ledger thread feeds it once per cycle (collector/ledger.py), in this order:

1. `gap(key, start, end, mark)` for each of this feeder's own gaps found since the last cycle
   (reconnect, seq break, stale, publish overflow, startup): the running interval ends at the
   gap's start (no further than what was published), the next one starts at the gap's end;
2. `mark(key, ts)` with the exchange time of the last record of `key` the broker accepted
   (the publisher's watermark, advanced only on an acknowledged LPUSH).

Coverage never follows connection state: a connected feeder that publishes nothing does not
move its interval. A silence longer than `max_silence_ms` between two marks also ends the
interval (a safety net: nothing may be claimed that no record vouches for).

Why marks before gaps are safe: the ledger reads the publisher's marks BEFORE it takes the
pipeline's gaps (feeder.py `_pull`), and a gap is queued before the records after it are, so a
mark that passed a gap always arrives with that gap (the publisher drains overflow gaps before
it advances marks, for the same reason).

`take()` returns the intervals that changed, for one pipelined write per cycle.
"""

from __future__ import annotations

Key = tuple[str, str]


class CoverageTracker:
    def __init__(self, max_silence_ms: int) -> None:
        self.max_silence_ms = max_silence_ms
        self.current: dict[Key, list[int]] = {}  # key -> [start, end] of the running interval
        self.pending: dict[Key, int] = {}  # after a gap: the next interval starts here
        self._dirty: dict[tuple[Key, int], int] = {}  # (key, start) -> end, to write

    def gap(self, key: Key, start_ms: int, end_ms: int, mark: int | None) -> None:
        cur = self.current.pop(key, None)
        if cur is None and key in self.pending and mark is not None and mark >= self.pending[key]:
            # between two gaps of one cycle: the records from the first's end were published
            p = self.pending[key]
            cur = [p, p]
        if cur is not None:
            if mark is not None:
                cur[1] = max(cur[1], min(mark, start_ms))
            cur[1] = min(cur[1], max(start_ms, cur[0]))
            self._dirty[(key, cur[0])] = cur[1]
        self.pending[key] = max(start_ms, end_ms)

    def started(self, key: Key, first_ms: int) -> None:
        """This run's first record of `key` (the startup gap's end): the first interval starts
        there once it is published, not at the first mark (a cycle's last record)."""
        if key not in self.current and key not in self.pending:
            self.pending[key] = first_ms

    def mark(self, key: Key, ts: int) -> None:
        cur = self.current.get(key)
        if cur is not None:
            if ts <= cur[1]:
                return
            if ts - cur[1] > self.max_silence_ms:
                self.current.pop(key)  # nothing vouches for the silence: a new interval
                cur = None
            else:
                cur[1] = ts
                self._dirty[(key, cur[0])] = ts
                return
        start = ts
        if key in self.pending:
            if ts < self.pending[key]:
                return  # records from before the gap's end: the closed interval's, not claimed
            start = self.pending.pop(key)
        self.current[key] = [start, ts]
        self._dirty[(key, start)] = ts

    def take(self) -> list[tuple[Key, int, int]]:
        """(key, start, end) of every interval changed since the last call."""
        out = [(key, start, end) for (key, start), end in self._dirty.items()]
        self._dirty = {}
        return out

    def put_back(self, changes: list[tuple[Key, int, int]]) -> None:
        """A write that failed: written with the next cycle's (a change made since wins)."""
        for key, start, end in changes:
            self._dirty.setdefault((key, start), end)
