"""Candles from trades and rolling VWAP, the pure parts: bar boundaries (HK day), exact OHLCV
whatever the order of arrival or duplicates, bars built from 1m bars, VWAP against an
independent Fraction computation."""

from __future__ import annotations

import decimal
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.derive import bars, ohlcv, vwap

HK = timezone(timedelta(hours=8))


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# ----- bars ---------------------------------------------------------------------------------------
def test_a_hk_day_starts_at_sixteen_utc_and_a_utc_day_at_midnight():
    # 2026-03-10 17:30 UTC is 2026-03-11 01:30 in Hong Kong
    ts = ms(datetime(2026, 3, 10, 17, 30, tzinfo=UTC))
    assert bars.start_of("1D", ts) == ms(datetime(2026, 3, 11, tzinfo=HK))
    assert bars.start_of("1D", ts) == ms(datetime(2026, 3, 10, 16, tzinfo=UTC))
    assert bars.start_of("1Dutc", ts) == ms(datetime(2026, 3, 10, tzinfo=UTC))
    # 15:59:59.999 UTC still belongs to the HK day that began the day before at 16:00
    before = ms(datetime(2026, 3, 10, 16, tzinfo=UTC)) - 1
    assert bars.start_of("1D", before) == ms(datetime(2026, 3, 9, 16, tzinfo=UTC))


@pytest.mark.parametrize(
    ("bar", "ts", "start"),
    [
        ("1m", datetime(2026, 3, 10, 17, 30, 59, 999000), datetime(2026, 3, 10, 17, 30)),
        ("3m", datetime(2026, 3, 10, 17, 32, 1), datetime(2026, 3, 10, 17, 30)),
        ("5m", datetime(2026, 3, 10, 17, 34, 59), datetime(2026, 3, 10, 17, 30)),
        ("15m", datetime(2026, 3, 10, 17, 44), datetime(2026, 3, 10, 17, 30)),
        ("30m", datetime(2026, 3, 10, 17, 59), datetime(2026, 3, 10, 17, 30)),
        ("1H", datetime(2026, 3, 10, 17, 59), datetime(2026, 3, 10, 17)),
        ("2H", datetime(2026, 3, 10, 17, 59), datetime(2026, 3, 10, 16)),
        ("4H", datetime(2026, 3, 10, 19, 59), datetime(2026, 3, 10, 16)),
        ("6H", datetime(2026, 3, 10, 21, 59), datetime(2026, 3, 10, 16)),  # HK 00:00-06:00
        ("6Hutc", datetime(2026, 3, 10, 21, 59), datetime(2026, 3, 10, 18)),
        # Wednesday 2026-03-11 in HK; the HK week began Monday 2026-03-09 00:00 HK
        ("1W", datetime(2026, 3, 10, 17), datetime(2026, 3, 8, 16)),
        ("1Wutc", datetime(2026, 3, 10, 17), datetime(2026, 3, 9)),
    ],
)
def test_bar_starts(bar, ts, start):
    got = bars.start_of(bar, ms(ts.replace(tzinfo=UTC)))
    assert got == ms(start.replace(tzinfo=UTC))


@given(st.integers(0, 4_000_000_000_000), st.sampled_from(sorted(bars.BARS)))
def test_every_instant_lies_in_exactly_its_bar(ts, bar):
    start = bars.start_of(bar, ts)
    assert start <= ts < bars.end_of(bar, start)
    assert bars.start_of(bar, start) == start
    assert bars.start_of(bar, bars.end_of(bar, start)) == bars.end_of(bar, start)


def test_unknown_bar_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown bar '7m'"):
        bars.length_of("7m")


def test_runs_and_overlaps():
    m = bars.MINUTE
    assert bars.runs({0, m, 2 * m, 5 * m}) == [(0, 3 * m), (5 * m, 6 * m)]
    assert bars.overlaps(0, m, [(m - 1, m + 5)])
    assert not bars.overlaps(0, m, [(m, m + 5)])  # a gap starting at the bar's end
    assert bars.overlaps(m, 2 * m, [(0, m)])  # a gap ending at the bar's start touches it


# ----- OHLCV --------------------------------------------------------------------------------------
def decimals(places: int = 8):
    return st.decimals(
        min_value=Decimal("0.00000001"), max_value=Decimal("99999"), places=places
    ).map(lambda d: format(d, "f"))


trade_lists = st.lists(
    st.tuples(st.integers(0, 5 * bars.MINUTE), decimals(), decimals(), st.booleans()),
    min_size=1,
    max_size=60,
)


def as_trades(rows):
    return [
        {"tradeId": str(i + 1), "ts": str(ts), "px": px, "sz": sz, "validated": v}
        for i, (ts, px, sz, v) in enumerate(rows)
    ]


def truth_ohlcv(trades):
    """Independent: sort by (ts, id), Fractions."""
    ordered = sorted(trades, key=lambda t: (int(t["ts"]), int(t["tradeId"])))
    pxs = [Fraction(t["px"]) for t in ordered]
    return {
        "o": pxs[0],
        "h": max(pxs),
        "l": min(pxs),
        "c": pxs[-1],
        "vol": sum(Fraction(t["sz"]) for t in ordered),
        "volCcy": sum(Fraction(t["px"]) * Fraction(t["sz"]) for t in ordered),
        "n": len(ordered),
    }


def as_fractions(c: ohlcv.Ohlcv):
    return {
        "o": Fraction(c.o),
        "h": Fraction(c.h),
        "l": Fraction(c.l),
        "c": Fraction(c.c),
        "vol": Fraction(c.vol),
        "volCcy": Fraction(c.vol_ccy),
        "n": c.n,
    }


@settings(max_examples=200, deadline=None)
@given(trade_lists, st.randoms(use_true_random=False), st.integers(0, 20))
def test_ohlcv_is_exact_whatever_the_order_and_duplicates(rows, rnd, dups):
    trades = as_trades(rows)
    arrived = trades + [rnd.choice(trades) for _ in range(dups)]  # redelivered, backfilled twice
    rnd.shuffle(arrived)
    got = ohlcv.from_trades(arrived)
    assert got is not None
    assert as_fractions(got) == truth_ohlcv(trades)


@settings(max_examples=100, deadline=None)
@given(trade_lists, st.sampled_from(["3m", "5m"]))
def test_a_bar_from_its_1m_bars_equals_the_bar_from_its_trades(rows, bar):
    trades = as_trades(rows)
    by_bar: dict[int, list] = {}
    by_minute: dict[int, list] = {}
    for t in trades:
        by_bar.setdefault(bars.start_of(bar, int(t["ts"])), []).append(t)
        by_minute.setdefault(bars.minute_of(int(t["ts"])), []).append(t)
    for start, ts in by_bar.items():
        parts = [
            (m, ohlcv.from_trades(tr))
            for m, tr in by_minute.items()
            if bars.start_of(bar, m) == start
        ]
        assert ohlcv.combine(reversed(parts)) == ohlcv.from_trades(ts)


def test_no_trades_no_candle_and_text_without_exponents():
    assert ohlcv.from_trades([]) is None
    assert ohlcv.combine([]) is None
    assert ohlcv.fmt(Decimal("1E+2")) == "100"
    assert ohlcv.fmt(Decimal("0.0300")) == "0.03"
    assert ohlcv.fmt(Decimal("0.00000001")) == "0.00000001"
    assert ohlcv.fmt(Decimal("0.000")) == "0"


def test_open_and_close_follow_trade_ids_within_one_millisecond():
    trades = [
        {"tradeId": "12", "ts": "5", "px": "3", "sz": "1"},
        {"tradeId": "10", "ts": "5", "px": "1", "sz": "1"},
        {"tradeId": "11", "ts": "5", "px": "2", "sz": "1"},
    ]
    c = ohlcv.from_trades(trades)
    assert (c.o, c.c, c.n) == (Decimal(1), Decimal(3), 3)


def test_flags():
    m = bars.MINUTE
    cov = ohlcv.Coverage(covered_from=0, watermark=2 * m, holes=[], now_ms=2 * m)
    assert ohlcv.flags("1m", 0, cov) == (True, True)
    assert ohlcv.flags("1m", m, cov) == (True, True)  # watermark exactly at the end
    assert ohlcv.flags("1m", 2 * m, cov) == (True, False)  # still open
    late_start = ohlcv.Coverage(covered_from=10, watermark=2 * m, holes=[], now_ms=2 * m)
    assert ohlcv.flags("1m", 0, late_start) == (False, False)  # trades before 10 unknown
    gap = ohlcv.Coverage(covered_from=0, watermark=5 * m, holes=[(m + 5, m + 9)], now_ms=5 * m)
    assert ohlcv.flags("1m", m, gap) == (False, False)
    assert ohlcv.flags("5m", 0, gap) == (False, False)
    assert ohlcv.flags("1m", 0, gap) == (True, True)
    never = ohlcv.Coverage(covered_from=None, watermark=5 * m, holes=[], now_ms=5 * m)
    assert ohlcv.flags("1m", 0, never) == (False, False)


# ----- VWAP ---------------------------------------------------------------------------------------
def truth_vwap(trades, mark, window):
    inside = [t for t in trades if mark - window < int(t["ts"]) <= mark]
    if not inside:
        return None
    num = sum(Fraction(t["px"]) * Fraction(t["sz"]) for t in inside)
    den = sum(Fraction(t["sz"]) for t in inside)
    return num / den, len(inside), all(t["validated"] for t in inside)


@settings(max_examples=150, deadline=None)
@given(
    trade_lists,
    st.randoms(use_true_random=False),
    st.sampled_from([1000, 5000, 60_000, 300_000]),
)
def test_vwap_equals_an_independent_fraction_at_every_second_mark(rows, rnd, window):
    trades = as_trades(rows)
    arrived = trades + trades[: len(trades) // 3]
    rnd.shuffle(arrived)
    end = 5 * bars.MINUTE + window
    got = {m.ts: m for m in vwap.marks(arrived, 0, end, window)}
    for mark in range(0, end + 1, 1000):
        want = truth_vwap(trades, mark, window)
        if want is None:
            assert mark not in got
            continue
        value, n, validated = want
        m = got[mark]
        assert (m.n, m.validated) == (n, validated)
        # rounded half-even to 34 significant digits: within half a unit of the last digit
        ulp = Fraction(10) ** (m.vwap.adjusted() - 33)
        assert abs(Fraction(m.vwap) - value) <= ulp / 2
        ctx34 = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
        assert ctx34.divide(Decimal(value.numerator), Decimal(value.denominator)) == m.vwap


def test_vwap_window_is_open_at_its_start_and_closed_at_the_mark():
    trades = [
        {"tradeId": "1", "ts": "1000", "px": "10", "sz": "1", "validated": True},
        {"tradeId": "2", "ts": "2000", "px": "20", "sz": "3", "validated": False},
    ]
    got = {m.ts: m for m in vwap.marks(trades, 0, 4000, 2000)}
    assert 0 not in got
    assert got[1000] == vwap.Mark(1000, Decimal(10), 1, True)
    assert got[2000] == vwap.Mark(2000, Decimal("17.5"), 2, False)
    assert got[3000] == vwap.Mark(3000, Decimal(20), 1, False)  # the trade at 1000 left
    assert 4000 not in got


def test_vwap_documents_follow_the_contract():
    mark = vwap.Mark(2000, Decimal("17.50"), 2, False)
    doc = vwap.vwap_doc("BTC-USDT", mark, 300_000)
    assert doc["_id"] == "BTC-USDT:2000" and doc["vwap"] == "17.5" and doc["ts"] == 2000
    assert vwap.redis_fields(doc) == {
        "vwap": "17.5",
        "ts": "2000",
        "window_ms": "300000",
        "n": "2",
        "validated": "0",
    }
