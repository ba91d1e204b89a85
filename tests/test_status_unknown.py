"""`python -m collector status` prints nothing it does not know: no `None`, no empty values.

A feeder that has not closed a connection yet has no last close; a gap of a channel without
trade ids has none to print; an older feeder's heartbeat may lack its pid."""

from __future__ import annotations

from collector import status


def _state(connection: dict, gap: dict, pid: object = None) -> dict:
    return {
        "healthy": True,
        "problems": [],
        "open_gaps": 1,
        "recent_open_gaps": [gap],
        "queues": {"ingest": 0, "backfill": 0},
        "unacked": 0,
        "feeders": [
            {
                "id": "f1",
                "alive": True,
                "heartbeat_age_s": 1.0,
                "pid": pid,
                "connections": [connection],
            }
        ],
    }


CONN = {
    "name": "conn-public",
    "endpoint": "public",
    "state": "live",
    "reconnects": 0,
    "subscriptions": {"books5:BTC-USDT": {"status": "live", "error": None, "age_s": 0.2}},
}


def test_unknown_values_are_left_out_not_printed_as_none():
    gap = {
        "id": "9",
        "cause": "stale",
        "channel": "candle1m",
        "instId": "BTC-USDT",
        "start_ms": "100",
        "end_ms": "200",
        "start_id": "",
        "status": "open",
    }
    text = status.format_status(_state({**CONN, "last_close": None}, gap))
    assert "None" not in text and "last close" not in text and "ids" not in text
    assert "(pid" not in text and "feeder f1: heartbeat 1.0 s ago" in text
    assert "  conn-public: live, 0 reconnects\n" in text + "\n"
    assert "  gap 9: stale candle1m BTC-USDT 100..200 [open]" in text
    assert ": ," not in text and "  " + "\n" not in text


def test_known_values_are_still_printed():
    gap = {
        "id": "7",
        "cause": "reconnect",
        "channel": "trades-all",
        "instId": "BTC-USDT",
        "start_ms": "1",
        "end_ms": "2",
        "start_id": "10",
        "end_id": "20",
        "status": "open",
    }
    text = status.format_status(_state({**CONN, "last_close": "1006"}, gap, pid="4711"))
    assert "feeder f1 (pid 4711): heartbeat 1.0 s ago" in text
    assert "conn-public: live, 0 reconnects, last close: 1006" in text
    assert "gap 7: reconnect trades-all BTC-USDT 1..2 ids 10..20 [open]" in text


def test_a_gap_with_one_known_bound_marks_the_other_unknown():
    gap = {
        "id": "3",
        "cause": "overflow",
        "channel": "trades-all",
        "instId": "ETH-USDT",
        "start_ms": "5",
        "end_ms": None,
        "end_id": "44",
    }
    text = status.format_status(_state(CONN, gap))
    assert "gap 3: overflow trades-all ETH-USDT 5..? ids ?..44" in text and "None" not in text
