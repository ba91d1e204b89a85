"""Pure backfill planning: which REST repair a gap needs, time parsing, audit arithmetic and the
beat sweep's decisions. No I/O and no clock: callers pass `now_ms` in.

A gap (core/contract.py, `gap:<id>` hash) names a channel, an instrument (or instType for
private channels), a time range and, for trades, the last tradeId seen before it and the first
one seen after it. `plan_gap` turns it into a `Plan`: a list of `Step`s, each one REST stream
(trades of one instrument, orders of one instType, ...), so a repair can save "step N, cursor C"
after each page and resume there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import PlanError  # noqa: F401 - raised here; importable from here too
from core.gaps import Gap
from okx.channels import BOOK_CHANNELS, CANDLE_BARS, PRIVATE_CHANNELS

TRADE_CHANNELS = ("trades", "trades-all")
ACCOUNT_CHANNELS = ("balance_and_position", "account", "positions")
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")

BOOK_UNREPAIRABLE = "book history cannot be backfilled"
TICKER_UNREPAIRABLE = "ticker history cannot be backfilled (OKX has no ticker history endpoint)"

# on-demand names -> ledger channel (the issue's `celery call backfill` examples)
CHANNEL_ALIASES = {
    "orders": "orders",
    "fills": "orders",
    "balances": "balance_and_position",
    "positions": "balance_and_position",
    "account": "balance_and_position",
    "books": "books",
    "tickers": "tickers",
}


@dataclass(frozen=True)
class Step:
    """One REST stream. kind: trades | candles | orders | pending | fills | account | book |
    ticker. `key` is the instrument (trades, candles, book, ticker) or the instType."""

    kind: str
    key: str
    bar: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    lower_id: str | None = None
    upper_id: str | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    # set when nothing can fill the gap's history; the steps (if any) only reseed current state
    unrepairable: str = ""
    # set when the steps fill only part of what the gap covers (kept as the filled gap's reason)
    note: str = ""
    stores_validated_trades: bool = field(default=False)


def parse_time(value: Any, name: str = "time") -> int:
    """ISO-8601 ('2026-11-21T10:00:00Z', offsets allowed, naive = UTC) or epoch milliseconds
    (int or digit string) -> epoch ms."""
    if isinstance(value, bool):
        raise PlanError(f"{name}: expected ISO-8601 or epoch milliseconds, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        ms = int(value.strip())
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise PlanError(
                f"{name}: {value!r} is neither ISO-8601 nor epoch milliseconds"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    else:
        raise PlanError(f"{name}: expected ISO-8601 or epoch milliseconds, got {value!r}")
    if ms < 10**11:  # before 1973: seconds passed where milliseconds were meant
        raise PlanError(f"{name}: {value!r} is not epoch milliseconds (seconds given?)")
    return ms


def normalize_channel(channel: Any, bar: Any = None) -> str:
    """An on-demand channel name -> the ledger's channel ('candles' + bar -> 'candle1m')."""
    if not isinstance(channel, str) or not channel:
        raise PlanError(f"channel must be a non-empty string, got {channel!r}")
    if channel in ("candles", "candle"):
        bar = bar or "1m"
        if bar not in CANDLE_BARS:
            raise PlanError(f"unknown candle bar {bar!r}")
        return f"candle{bar}"
    channel = CHANNEL_ALIASES.get(channel, channel)
    if (
        channel in TRADE_CHANNELS
        or channel in PRIVATE_CHANNELS
        or channel in BOOK_CHANNELS
        or channel == "tickers"
        or _bar_of(channel)
    ):
        return channel
    raise PlanError(f"unknown channel {channel!r}")


def _bar_of(channel: str) -> str:
    if channel.startswith("candle") and channel[len("candle") :] in CANDLE_BARS:
        return channel[len("candle") :]
    return ""


def _int_field(gap: dict, name: str) -> int:
    raw = gap.get(name, "")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise PlanError(f"malformed gap: {name}={raw!r} is not an integer") from None


def _id_field(gap: dict, name: str) -> str | None:
    raw = str(gap.get(name) or "")
    if raw == "":
        return None
    body = raw[1:] if raw.startswith("-") else raw
    if not body.isdigit():
        raise PlanError(f"malformed gap: {name}={raw!r} is not a trade id")
    return raw


def inst_types_for(key: str, configured: Iterable[str]) -> tuple[str, ...]:
    """A private gap's instId field holds the subscription's instType ('ANY', 'SPOT') or an
    instrument; repair every configured instType unless one specific type is named."""
    if key in INST_TYPES:
        return (key,)
    return tuple(configured)


def plan_gap(
    gap: dict, *, inst_types: Iterable[str] = INST_TYPES, orders_lookback_ms: int = 86_400_000
) -> Plan:
    """What repairs this gap (raises PlanError for a malformed one)."""
    channel = gap.get("channel") or ""
    inst = gap.get("instId") or ""
    start = _int_field(gap, "start_ms")
    end = _int_field(gap, "end_ms")
    if end < start:
        raise PlanError(f"malformed gap: end_ms {end} < start_ms {start}")
    if channel in TRADE_CHANNELS:
        if not inst:
            raise PlanError("malformed gap: trades gap without instId")
        lower, upper = _id_field(gap, "start_id"), _id_field(gap, "end_id")
        if lower is not None and upper is not None and int(upper) <= int(lower):
            raise PlanError(f"malformed gap: end_id {upper} <= start_id {lower}")
        # Ids are exact when known; time bounds only where an id is missing.
        return Plan(
            (
                Step(
                    "trades",
                    inst,
                    lower_id=lower,
                    upper_id=upper,
                    start_ms=None if lower is not None else start,
                    end_ms=None if upper is not None else end,
                ),
            ),
            stores_validated_trades=True,
        )
    bar = _bar_of(channel)
    if bar:
        if not inst:
            raise PlanError("malformed gap: candle gap without instId")
        return Plan((Step("candles", inst, bar=bar, start_ms=start, end_ms=end),))
    if channel == "orders":
        types = inst_types_for(inst, inst_types)
        # orders-history filters on cTime: an order created before the gap may complete inside it
        begin = max(0, start - orders_lookback_ms)
        steps = [Step("orders", t, start_ms=begin, end_ms=end) for t in types]
        steps += [Step("pending", t) for t in types]
        steps += [Step("fills", t, start_ms=start, end_ms=end) for t in types]
        # An "ANY" subscription lost orders of every instType, but only the configured ones are
        # fetched: say so on the gap instead of calling it filled without a word.
        left = [t for t in INST_TYPES if t not in types] if inst in ("ANY", "") else []
        note = (
            f"partial: only {', '.join(types)} orders fetched (BACKFILL_INST_TYPES); "
            f"{', '.join(left)} orders of this window were not"
            if left
            else ""
        )
        return Plan(tuple(steps), note=note)
    if channel in ACCOUNT_CHANNELS:
        return Plan((Step("account", ""),))
    if channel in BOOK_CHANNELS:
        if not inst:
            raise PlanError("malformed gap: book gap without instId")
        return Plan((Step("book", inst),), unrepairable=BOOK_UNREPAIRABLE)
    if channel == "tickers":
        if not inst:
            raise PlanError("malformed gap: ticker gap without instId")
        return Plan((Step("ticker", inst),), unrepairable=TICKER_UNREPAIRABLE)
    raise PlanError(f"no repair for channel {channel!r}")


# ----- resume cursors: "<step index>|<fetcher cursor>" --------------------------------------------


def encode_progress(step: int, cursor: str | None) -> str:
    return f"{step}|{cursor or ''}"


def decode_progress(value: str | None, n_steps: int) -> tuple[int, str | None]:
    """(step to start at, fetcher cursor or None). Anything unreadable restarts from the top
    (safe: every write is idempotent)."""
    if not value or "|" not in value:
        return 0, None
    head, _, cursor = value.partition("|")
    if not head.isdigit() or int(head) > n_steps:
        return 0, None
    return int(head), cursor or None


# ----- beat sweep -------------------------------------------------------------------------------


def gaps_to_enqueue(gaps: Iterable[dict], now_ms: int, requeue_after_ms: int) -> list[str]:
    """Open gaps nobody has touched for `requeue_after_ms` (their task may be lost) and filling
    gaps whose lease expired (their worker died)."""
    out = []
    for g in gaps:
        status = g.get("status")
        if status == "open":
            touched = max(_num(g.get("updated_ms")), _num(g.get("enqueued_ms")))
            if now_ms - touched >= requeue_after_ms:
                out.append(g["id"])
        elif status == "filling":
            if (
                _num(g.get("lease_until")) <= now_ms
                and now_ms - _num(g.get("enqueued_ms")) >= requeue_after_ms // 4
            ):
                out.append(g["id"])
    return out


def stale_watermarks(
    marks: dict[tuple[str, str], dict],
    now_ms: int,
    stale_ms: int,
    covered: dict[tuple[str, str], int],
    open_keys: set[tuple[str, str]],
) -> list[Gap]:
    """Gaps for public (channel, instId) streams that received nothing for `stale_ms`.

    marks: the feeder's watermarks (ts = exchange time of the last record, id, seen_ms = local
    receive time). covered: up to which exchange time an earlier sweep already opened a gap.
    Streams with an open gap already, private (event-driven, quiet by nature) and book streams
    (no history) are left out."""
    out = []
    for key, mark in sorted(marks.items()):
        channel, inst = key
        if channel in PRIVATE_CHANNELS or channel in BOOK_CHANNELS or key in open_keys:
            continue
        seen, ts = _num(mark.get("seen_ms")), _num(mark.get("ts"))
        if not seen or now_ms - seen < stale_ms:
            continue
        start = max(ts, covered.get(key, 0))
        if start >= now_ms:
            continue
        # From the last record seen (its id is the exclusive lower bound) or from what an
        # earlier sweep covered, up to now.
        start_id = str(mark.get("id") or "") if start == ts else ""
        out.append(
            Gap(
                channel,
                inst,
                start,
                now_ms,
                "stale",
                start_id=start_id if channel in TRADE_CHANNELS else "",
                reason=f"stale: no {channel} {inst} data for {(now_ms - seen) // 1000} s",
            )
        )
    return out


def dead_feeders(feeders: dict[str, dict | None], now_ms: int, dead_ms: int) -> list[str]:
    """Feeder ids whose heartbeat hash is gone (expired) or older than `dead_ms`."""
    out = []
    for fid, hb in sorted(feeders.items()):
        if not hb or now_ms - _num(hb.get("heartbeat_ms")) > dead_ms:
            out.append(fid)
    return out


# ----- audit ----------------------------------------------------------------------------------------


def audit_window(
    now_ms: int, validated_until: int | None, window_ms: int, lag_ms: int, overlap_ms: int = 5_000
) -> tuple[int, int] | None:
    """[start, end] of the next audit of one instrument: from where the last one stopped (a little
    overlap) but never further back than `window_ms`, up to `lag_ms` before now (the live feed
    may still be delivering the last seconds). None when there is nothing new to audit."""
    end = now_ms - lag_ms
    start = end - window_ms
    if validated_until is not None:
        start = max(start, validated_until - overlap_ms)
    if start >= end:
        return None
    return start, end


@dataclass(frozen=True)
class Drift:
    missing: list[str]  # on REST, not stored: inserted by the audit
    extra: list[str]  # stored, not on REST: reported (never deleted)
    confirmed: list[str]  # both: marked validated


def trade_drift(stored_ids: Iterable[str], rest_ids: Iterable[str]) -> Drift:
    stored, rest = set(stored_ids), set(rest_ids)
    key = int
    return Drift(
        missing=sorted(rest - stored, key=key),
        extra=sorted(stored - rest, key=key),
        confirmed=sorted(stored & rest, key=key),
    )


def _num(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
