"""Pure backfill planning: times, gap -> REST steps, resume cursors, sweep and audit decisions."""

from __future__ import annotations

import pytest

from tasks.backfill import plan as p
from tasks.backfill.plan import PlanError, Step


def gap(
    channel, inst="BTC-USDT", start=1_000_000_000_000, end=1_000_000_060_000, sid="", eid="", **kw
):
    return {
        "id": "7",
        "channel": channel,
        "instId": inst,
        "start_ms": str(start),
        "end_ms": str(end),
        "start_id": sid,
        "end_id": eid,
        "status": "open",
        **kw,
    }


@pytest.mark.parametrize(
    "value,ms",
    [
        ("2026-11-21T10:00:00Z", 1795255200000),
        ("2026-11-21T10:00:00.250Z", 1795255200250),
        ("2026-11-21T11:00:00+01:00", 1795255200000),
        ("2026-11-21T10:00:00", 1795255200000),  # naive = UTC
        (1795255200000, 1795255200000),
        ("1795255200000", 1795255200000),
    ],
)
def test_parse_time_accepts_iso_and_ms(value, ms):
    assert p.parse_time(value) == ms


@pytest.mark.parametrize("value", ["yesterday", "", None, True, 1795255200, "1795255200", 1.5])
def test_parse_time_refuses_the_rest_with_a_reason(value):
    with pytest.raises(PlanError):
        p.parse_time(value)


def test_trades_gap_uses_exact_id_bounds_and_time_only_where_an_id_is_missing():
    both = p.plan_gap(gap("trades-all", sid="100", eid="250"))
    assert both.steps == (Step("trades", "BTC-USDT", lower_id="100", upper_id="250"),)
    assert both.stores_validated_trades and not both.unrepairable
    no_end = p.plan_gap(gap("trades", sid="100"))
    assert no_end.steps == (Step("trades", "BTC-USDT", lower_id="100", end_ms=1_000_000_060_000),)
    no_ids = p.plan_gap(gap("trades"))
    assert no_ids.steps == (
        Step("trades", "BTC-USDT", start_ms=1_000_000_000_000, end_ms=1_000_000_060_000),
    )


def test_candle_orders_account_book_and_ticker_gaps():
    assert p.plan_gap(gap("candle1m")).steps == (
        Step("candles", "BTC-USDT", bar="1m", start_ms=1_000_000_000_000, end_ms=1_000_000_060_000),
    )
    assert p.plan_gap(gap("candle1M")).steps[0].bar == "1M"  # month, not minute
    orders = p.plan_gap(
        gap("orders", inst="ANY"), inst_types=("SPOT", "MARGIN"), orders_lookback_ms=1000
    )
    assert [(s.kind, s.key) for s in orders.steps] == [
        ("orders", "SPOT"),
        ("orders", "MARGIN"),
        ("pending", "SPOT"),
        ("pending", "MARGIN"),
        ("fills", "SPOT"),
        ("fills", "MARGIN"),
    ]
    assert orders.steps[0].start_ms == 1_000_000_000_000 - 1000  # created before the gap
    assert orders.steps[4].start_ms == 1_000_000_000_000
    assert orders.note == (
        "partial: only SPOT, MARGIN orders fetched (BACKFILL_INST_TYPES); "
        "SWAP, FUTURES, OPTION orders of this window were not"
    )
    assert p.plan_gap(gap("orders", inst="ANY")).note == ""  # every instType fetched
    assert [s.key for s in p.plan_gap(gap("orders", inst="SWAP")).steps] == ["SWAP"] * 3
    assert p.plan_gap(gap("orders", inst="SWAP"), inst_types=("SPOT",)).note == ""  # asked for
    for ch in ("balance_and_position", "account", "positions"):
        assert p.plan_gap(gap(ch, inst="")).steps == (Step("account", ""),)
    book = p.plan_gap(gap("books"))
    assert book.steps == (Step("book", "BTC-USDT"),)
    assert book.unrepairable == "book history cannot be backfilled"
    assert p.plan_gap(gap("tickers")).unrepairable.startswith("ticker history")


@pytest.mark.parametrize(
    "bad,why",
    [
        (gap("trades", start="x"), "start_ms"),
        (gap("trades", start=10, end=5), "end_ms 5 < start_ms 10"),
        (gap("trades", sid="12a"), "start_id"),
        (gap("trades", sid="300", eid="200"), "end_id 200 <= start_id 300"),
        (gap("trades", inst=""), "without instId"),
        (gap("nonsense"), "no repair for channel"),
    ],
)
def test_malformed_gaps_are_refused_with_the_reason(bad, why):
    with pytest.raises(PlanError, match=why):
        p.plan_gap(bad)


def test_normalize_channel_aliases():
    assert p.normalize_channel("candles", "5m") == "candle5m"
    assert p.normalize_channel("candles") == "candle1m"
    assert p.normalize_channel("fills") == "orders"
    assert p.normalize_channel("balances") == "balance_and_position"
    assert p.normalize_channel("trades") == "trades"
    with pytest.raises(PlanError):
        p.normalize_channel("candles", "7m")
    with pytest.raises(PlanError):
        p.normalize_channel("klines")


def test_progress_cursor_round_trip_and_garbage_restarts():
    assert p.decode_progress(p.encode_progress(2, "abc:12"), 5) == (2, "abc:12")
    assert p.decode_progress(p.encode_progress(3, None), 5) == (3, None)
    for junk in (None, "", "x|1", "9|1", "nobar"):
        assert p.decode_progress(junk, 5) == (0, None)


def test_gaps_to_enqueue_lost_tasks_and_expired_leases_only():
    now = 1_000_000
    gaps = [
        {"id": "1", "status": "open", "updated_ms": str(now - 200_000)},  # untouched: resend
        {"id": "2", "status": "open", "updated_ms": str(now - 1_000)},  # fresh
        {
            "id": "3",
            "status": "open",
            "updated_ms": str(now - 200_000),
            "enqueued_ms": str(now - 5_000),
        },  # just re-sent
        {"id": "4", "status": "filling", "lease_until": str(now - 1)},  # worker died
        {"id": "5", "status": "filling", "lease_until": str(now + 50_000)},  # busy
    ]
    assert p.gaps_to_enqueue(gaps, now, 120_000) == ["1", "4"]


def test_stale_watermarks_skip_private_books_and_open_keys_and_continue_coverage():
    now = 10_000_000
    marks = {
        ("trades-all", "BTC-USDT"): {"ts": "9000000", "id": "555", "seen_ms": "9000000"},
        ("trades-all", "ETH-USDT"): {"ts": "9990000", "id": "9", "seen_ms": "9990000"},  # fresh
        ("orders", "ANY"): {"ts": "1", "id": "1", "seen_ms": "1"},  # private
        ("books", "BTC-USDT"): {"ts": "1", "id": "1", "seen_ms": "1"},  # no history
        ("candle1m", "BTC-USDT"): {"ts": "8000000", "id": "", "seen_ms": "8000000"},
        ("tickers", "SOL-USDT"): {"ts": "8000000", "id": "", "seen_ms": "8000000"},
    }
    out = p.stale_watermarks(
        marks,
        now,
        300_000,
        covered={("candle1m", "BTC-USDT"): 9_500_000},
        open_keys={("tickers", "SOL-USDT")},
    )
    assert [(g.channel, g.instId, g.start_ms, g.start_id) for g in out] == [
        ("candle1m", "BTC-USDT", 9_500_000, ""),  # continues where the last sweep ended
        ("trades-all", "BTC-USDT", 9_000_000, "555"),
    ]  # exact lower id
    assert all(g.end_ms == now and g.cause == "stale" for g in out)


def test_dead_feeders():
    now = 100_000
    feeders = {
        "a": {"heartbeat_ms": str(now - 5_000)},
        "b": {"heartbeat_ms": str(now - 40_000)},
        "c": None,
    }
    assert p.dead_feeders(feeders, now, 30_000) == ["b", "c"]


def test_audit_window_and_drift():
    assert p.audit_window(100_000, None, 50_000, 10_000) == (40_000, 90_000)
    assert p.audit_window(100_000, 80_000, 50_000, 10_000, overlap_ms=5_000) == (75_000, 90_000)
    assert p.audit_window(100_000, 95_000, 50_000, 10_000, overlap_ms=0) is None
    d = p.trade_drift(["1", "2", "3", "10"], ["2", "3", "4", "11"])
    assert d.missing == ["4", "11"] and d.extra == ["1", "10"] and d.confirmed == ["2", "3"]
