"""OKX's bar arithmetic, pure: where a bar of each size starts and ends.

OKX opens bars of 6H and longer at Hong Kong midnight (UTC+8) unless the bar's name ends in
`utc`; shorter bars are aligned to the epoch (which is the same on both clocks, since 8 h is a
multiple of them). Weeks start on Monday. Months are calendar bars (unequal lengths): not
built here (docs/derived.md).
"""

from __future__ import annotations

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
HK_OFFSET = 8 * HOUR  # Hong Kong time, no daylight saving
_MONDAY = 3 * DAY  # 1970-01-01 was a Thursday

# bar -> (length ms, alignment offset ms): start = (ts + offset) // length * length - offset
BARS: dict[str, tuple[int, int]] = {
    "1m": (MINUTE, 0),
    "3m": (3 * MINUTE, 0),
    "5m": (5 * MINUTE, 0),
    "15m": (15 * MINUTE, 0),
    "30m": (30 * MINUTE, 0),
    "1H": (HOUR, 0),
    "2H": (2 * HOUR, 0),
    "4H": (4 * HOUR, 0),
    "6H": (6 * HOUR, HK_OFFSET),
    "12H": (12 * HOUR, HK_OFFSET),
    "1D": (DAY, HK_OFFSET),
    "2D": (2 * DAY, HK_OFFSET),
    "3D": (3 * DAY, HK_OFFSET),
    "1W": (7 * DAY, HK_OFFSET + _MONDAY),
    "6Hutc": (6 * HOUR, 0),
    "12Hutc": (12 * HOUR, 0),
    "1Dutc": (DAY, 0),
    "2Dutc": (2 * DAY, 0),
    "3Dutc": (3 * DAY, 0),
    "1Wutc": (7 * DAY, _MONDAY),
}

# What the derive task builds by default: the bars and the utc day.
DERIVED_BARS = ("1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "1D", "1Dutc")
BASE_BAR = "1m"  # built from trades; every longer bar is built from these


def length_of(bar: str) -> int:
    try:
        return BARS[bar][0]
    except KeyError:
        raise ValueError(f"unknown bar {bar!r}; expected one of {', '.join(BARS)}") from None


def start_of(bar: str, ts: int) -> int:
    """Start (ms) of the `bar` containing `ts`."""
    length, offset = BARS[bar] if bar in BARS else (length_of(bar), 0)
    return (ts + offset) // length * length - offset


def end_of(bar: str, start: int) -> int:
    """End (exclusive) of the bar starting at `start`."""
    return start + length_of(bar)


def minute_of(ts: int) -> int:
    return ts - ts % MINUTE


def bars_containing(minutes: set[int] | list[int], bar: str) -> list[int]:
    """Starts of the `bar`s that contain any of `minutes` (1m starts), sorted."""
    return sorted({start_of(bar, m) for m in minutes})


def runs(minutes: set[int] | list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of minute starts as [start, end) ranges, sorted."""
    out: list[tuple[int, int]] = []
    for m in sorted(set(minutes)):
        if out and out[-1][1] == m:
            out[-1] = (out[-1][0], m + MINUTE)
        else:
            out.append((m, m + MINUTE))
    return out


def overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Does [start, end) share an instant with any closed span [s, e] (a gap's start..end)?"""
    return any(s < end and e >= start for s, e in spans)


# Each longer bar is built from a few bars of the next shorter size that tile it exactly (6H and
# longer HK bars start at 16:00 UTC, a multiple of 2H and 4H): a rebuilt day reads six 4H bars.
CHILD_OF: dict[str, str] = {
    "3m": "1m",
    "5m": "1m",
    "15m": "5m",
    "30m": "15m",
    "1H": "30m",
    "2H": "1H",
    "4H": "2H",
    "6H": "2H",
    "12H": "6H",
    "1D": "4H",
    "2D": "1D",
    "3D": "1D",
    "1W": "1D",
    "6Hutc": "2H",
    "12Hutc": "6Hutc",
    "1Dutc": "4H",
    "2Dutc": "1Dutc",
    "3Dutc": "1Dutc",
    "1Wutc": "1Dutc",
}


def build_order(wanted: tuple[str, ...] | list[str]) -> list[str]:
    """The bars to build for `wanted`, each after the bar it is built from (1m first)."""
    needed: set[str] = set()
    for bar in wanted:
        length_of(bar)
        while bar != BASE_BAR:
            needed.add(bar)
            bar = CHILD_OF[bar]
    return [BASE_BAR] + sorted(needed, key=lambda b: (length_of(b), b))


def spans(starts: list[int] | set[int], bar: str) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive `bar`s starting at `starts`, merged, sorted."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(starts)):
        e = end_of(bar, s)
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching [start, end) ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
