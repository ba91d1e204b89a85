"""The shards in `collector status`: each shard's feeders (live or not) and its combined
coverage (the union of its feeders' intervals, core/intervals.py) over the last
COVERAGE_WINDOW_MS. `read_shards` reads Redis; `summarize` and `warnings` are pure.
"""

from __future__ import annotations

from typing import Any

from collector.ledger import shard_members
from core import coverage as coverage_store
from core import keys
from core.intervals import covered_ms

COVERAGE_WINDOW_MS = 10 * 60_000


def read_shards(r: Any, now_ms: int) -> list[dict[str, Any]]:
    out = []
    for shard in sorted(str(s) for s in r.smembers(keys.SHARDS)):
        members = shard_members(r.hgetall(keys.shard_key(shard)), now_ms)
        streams: dict[tuple[str, str], dict[str, list[tuple[int, int]]]] = {}
        for name in r.scan_iter(match=keys.coverage_pattern(shard), count=1000):
            name = name.decode() if isinstance(name, bytes) else str(name)
            channel, inst = keys.parse_coverage_key(name, shard)
            streams[(channel, inst)] = coverage_store.read(
                r, shard, channel, inst, now_ms - COVERAGE_WINDOW_MS, now_ms
            )
        if members or streams:
            out.append(summarize(shard, members, streams, now_ms))
    return out


def summarize(
    shard: str,
    members: dict[str, bool],
    streams: dict[tuple[str, str], dict[str, list[tuple[int, int]]]],
    now_ms: int,
) -> dict[str, Any]:
    """One shard's line: its feeders, and per stream the share of the window covered by any of
    them and the age of the newest covered time."""
    lo = now_ms - COVERAGE_WINDOW_MS
    rows: list[dict[str, Any]] = []
    for (channel, inst), cov in sorted(streams.items()):
        every = [iv for ivs in cov.values() for iv in ivs]
        newest = max((b for _a, b in every), default=None)
        share = covered_ms((lo, now_ms), every) / COVERAGE_WINDOW_MS
        rows.append(
            {
                "channel": channel,
                "instId": inst,
                "covered_share": round(share, 4),
                "covered_until_age_s": None
                if newest is None
                else round((now_ms - newest) / 1000, 1),
                "by": sorted(cov),
            }
        )
    return {
        "shard": shard,
        "feeders": [{"id": f, "live": up} for f, up in sorted(members.items())],
        "live": sum(1 for up in members.values() if up),
        "streams": rows,
        "worst": min(rows, key=lambda x: x["covered_share"]) if rows else None,
    }


def warnings(shards: list[dict[str, Any]]) -> list[str]:
    """A shard that has had two feeders or more and has at most one live left."""
    out = []
    for sh in shards:
        if len(sh["feeders"]) >= 2 and sh["live"] <= 1:
            down = ", ".join(f["id"] for f in sh["feeders"] if not f["live"])
            out.append(f"shard {sh['shard']}: down to {sh['live']} live feeder(s) ({down} down)")
    return out


def format_shards(shards: list[dict[str, Any]]) -> list[str]:
    lines = []
    for sh in shards:
        feeders = ", ".join(f"{f['id']} {'live' if f['live'] else 'DOWN'}" for f in sh["feeders"])
        lines.append(
            f"shard {sh['shard']}: {sh['live']} of {len(sh['feeders'])} feeders live ({feeders})"
        )
        w = sh["worst"]
        if w is not None:
            mean = sum(x["covered_share"] for x in sh["streams"]) / len(sh["streams"])
            lines.append(
                f"  coverage, last {COVERAGE_WINDOW_MS // 60_000} min: {mean:.1%} over "
                f"{len(sh['streams'])} streams; lowest {w['channel']} {w['instId']} "
                f"{w['covered_share']:.1%}"
            )
    return lines
