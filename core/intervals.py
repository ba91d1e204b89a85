"""Coverage arithmetic: which parts of a gap's window no feeder covered. Pure; ms integers.

A feeder's coverage interval (a, b) runs from the exchange time of the first record it
published after its own last gap to the last one it published since. It is OPEN: records at
exactly a may have arrived before the feeder's first one, and more at exactly b may still be in
flight, so only the times strictly between them are known complete. A gap's window [s, e] is
CLOSED: s is the recording feeder's last record before it, e its first after it, and other
records at those very milliseconds may be the ones it missed. So a gap is covered only when its
whole closed window lies inside the union of the other feeders' open intervals; what is left
are closed pieces whose bounds are, again, times of records someone received (a piece starting
at b starts at the covering feeder's last record, as a gap does).

Being strict costs a REST call for a one-millisecond sliver now and then; being loose would
close a gap over records nobody stored.
"""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[int, int]


def merge_open(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of open intervals, as disjoint open intervals in order. Two that only touch
    ((1, 5) and (5, 9)) stay apart: the point 5 is in neither."""
    out: list[list[int]] = []
    for a, b in sorted(i for i in intervals if i[0] < i[1]):
        if out and a < out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def uncovered(window: Interval, coverage: Iterable[Interval]) -> list[Interval]:
    """The closed pieces of the closed `window` that no open interval of `coverage` contains,
    in order. [] = the window is covered; [window] = nothing of it is."""
    s, e = window
    if e < s:
        return [window]  # not a time window (a private stream's gap): never covered
    pieces = []
    cur = s
    for a, b in merge_open(coverage):
        if b <= cur:
            continue
        if a >= e:
            break
        if a >= cur:
            pieces.append((cur, a))
        cur = b
        if cur > e:
            break
    if cur <= e:
        pieces.append((cur, e))
    return pieces


def covers(window: Interval, coverage: Iterable[Interval]) -> bool:
    return not uncovered(window, coverage)


def contributors(window: Interval, coverage: dict[str, list[Interval]]) -> list[str]:
    """The feeders whose intervals reach into the closed `window`, sorted (a gap's covered_by)."""
    s, e = window
    return sorted(f for f, ivs in coverage.items() if any(a < e and b > s for a, b in ivs))


def covered_ms(window: Interval, coverage: Iterable[Interval]) -> int:
    """How many ms of the closed `window` the open intervals cover (a share for operators)."""
    s, e = window
    total = 0
    for a, b in merge_open(coverage):
        lo, hi = max(a, s), min(b, e)
        if hi > lo:
            total += hi - lo
    return total
