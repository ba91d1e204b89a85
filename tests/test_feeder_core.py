"""Pure core of the feeder, without sockets: connection state machine, pipeline, outbox."""

from __future__ import annotations

import random

import orjson

from collector.outbox import Outbox
from collector.pipeline import LogLimiter, Pipeline, startup_gaps
from okx.records import Event
from okx.signing import Credentials
from okx.ws.session import Alert, Close, ConnState, Live, Lost, Replace, Send, Stale
from tests.polling import wait_for

CREDS = Credentials("key-123456789", "secret", "pass")


def sends(actions, what=None):
    return [a for a in actions if isinstance(a, Send) and (what is None or a.what == what)]


def ack(state, arg, now, rid=None):
    return state.on_event(Event("subscribe", arg=arg, id=rid, conn_id="c1"), now)


# ----- connection state machine ------------------------------------------------------------------


def test_login_acked_before_subscribing_and_fresh_timestamp_each_time():
    # Given a private connection
    args = [{"channel": "orders", "instType": "ANY"}, {"channel": "balance_and_position"}]
    st = ConnState("private", args, login=True, credentials=CREDS, rng=random.Random(1))
    # When it opens, only the login goes out, stamped with the wall clock given
    out = st.on_open(100.0, wall=1_700_000_000.0)
    assert [a.what for a in sends(out)] == ["login"]
    assert '"timestamp":"1700000000"' in out[0].text
    # Then subscribes follow the login ack, in one batched request
    out = st.on_event(Event("login", code="0", conn_id="c1"), 100.1)
    subs = sends(out, "subscribe")
    assert len(subs) == 1 and len(orjson.loads(subs[0].text)["args"]) == 2
    # A reconnect logs in again with a new timestamp
    st.on_closed(1006, 101.0)
    out = st.on_open(102.0, wall=1_700_000_042.0)
    assert '"timestamp":"1700000042"' in out[0].text


def test_acks_tracked_per_arg_and_live_when_all_acked():
    args = [{"channel": "trades", "instId": "A"}, {"channel": "trades", "instId": "B"}]
    st = ConnState("public", args)
    out = st.on_open(0.0, 0.0)
    rid = orjson.loads(sends(out)[0].text)["id"]
    out = ack(st, args[0], 0.1, rid)
    assert st.phase == "subscribing" and any(isinstance(a, Live) for a in out)
    ack(st, args[1], 0.2, rid)
    assert st.phase == "live"


def test_hard_error_is_not_retried_and_soft_error_is():
    args = [{"channel": "candle1m", "instId": "A"}]
    st = ConnState("public", args)
    rid = orjson.loads(sends(st.on_open(0.0, 0.0))[0].text)["id"]
    out = st.on_event(Event("error", code="64001", msg="migrated", id=rid), 0.1)
    assert any(isinstance(a, Alert) and a.level == "error" for a in out)
    key = ("candle1m", "A", None, None, None)
    assert st.subs[key].status == "failed" and st.phase == "live"
    assert not sends(st.tick(100.0), "subscribe")
    # soft error: retried later, not in a loop
    st2 = ConnState("public", args)
    rid = orjson.loads(sends(st2.on_open(0.0, 0.0))[0].text)["id"]
    st2.on_event(Event("error", code="64007", msg="internal", id=rid), 0.1)
    assert not sends(st2.tick(1.0), "subscribe")
    assert sends(st2.tick(6.0), "subscribe")


def test_error_on_a_multi_arg_request_retries_each_arg_alone():
    args = [{"channel": "trades", "instId": "A"}, {"channel": "trades", "instId": "BAD"}]
    st = ConnState("public", args)
    rid = orjson.loads(sends(st.on_open(0.0, 0.0))[0].text)["id"]
    out = st.on_event(Event("error", code="60018", msg="bad instId", id=rid), 0.1)
    assert len(sends(out, "subscribe")) == 2


def test_ping_after_silence_and_close_without_pong():
    st = ConnState(
        "public", [{"channel": "trades", "instId": "A"}], ping_after=2.0, pong_timeout=1.5
    )
    st.on_open(0.0, 0.0)
    assert not sends(st.tick(1.9), "ping")
    assert [a.text for a in sends(st.tick(2.0), "ping")] == ["ping"]
    assert not sends(st.tick(2.5), "ping")  # one ping outstanding at a time
    st.on_pong(2.6)  # pong: no close
    assert not any(isinstance(a, Close) for a in st.tick(3.0))
    assert sends(st.tick(4.7), "ping")
    out = st.tick(6.3)
    assert any(isinstance(a, Close) for a in out)


def test_notice_64008_asks_for_a_replacement_once():
    st = ConnState("public", [{"channel": "trades", "instId": "A"}])
    st.on_open(0.0, 0.0)
    ev = Event("notice", code="64008", msg="upgrade")
    assert any(isinstance(a, Replace) for a in st.on_event(ev, 1.0))
    assert not any(isinstance(a, Replace) for a in st.on_event(ev, 1.1))


def test_stale_subscription_resubscribed_but_quiet_channels_left_alone():
    args = [
        {"channel": "tickers", "instId": "A"},
        {"channel": "orders", "instType": "ANY"},
        {"channel": "trades", "instId": "A"},
    ]
    st = ConnState("public", args, stale_after=5.0)
    rid = orjson.loads(sends(st.on_open(0.0, 0.0))[0].text)["id"]
    for a in args:
        ack(st, a, 0.1, rid)
    st.on_pong(4.0)
    out = st.tick(5.5)
    stale = [a for a in out if isinstance(a, Stale)]
    assert [s.key[0] for s in stale] == ["tickers"]
    assert [a.what for a in sends(out)] == ["unsubscribe", "subscribe"]
    # rate-limited: not again right away
    assert not [a for a in st.tick(7.0) if isinstance(a, Stale)]


def test_books_are_not_called_stale_before_their_60s_heartbeat():
    arg = {"channel": "books", "instId": "A"}
    st = ConnState("public", [arg], stale_after=10.0)
    rid = orjson.loads(sends(st.on_open(0.0, 0.0))[0].text)["id"]
    ack(st, arg, 0.0, rid)
    st.on_pong(64.0)  # the socket itself is alive
    assert not [a for a in st.tick(65.0) if isinstance(a, Stale)]
    st.on_pong(75.0)
    assert [a for a in st.tick(76.0) if isinstance(a, Stale)]


def test_close_codes_and_backoff():
    st = ConnState(
        "private",
        [{"channel": "orders", "instType": "ANY"}],
        login=True,
        credentials=CREDS,
        rng=random.Random(3),
    )
    st.on_open(0.0, 0.0)
    out = st.on_event(Event("error", code="60009", msg="Login failed."), 0.1)
    assert any(isinstance(a, Close) for a in out)
    out = st.on_closed(4001, 0.2)
    assert st.next_connect_at >= 60.0  # loud, slow retry
    assert any(isinstance(a, Alert) and a.level == "error" for a in out)
    st2 = ConnState("public", [{"channel": "trades", "instId": "A"}], rng=random.Random(3))
    st2.on_open(0.0, 0.0)
    out = st2.on_closed(4004, 1.0)
    assert st2.next_connect_at - 1.0 <= 0.5 and any(isinstance(a, Lost) for a in out)


# ----- pipeline ----------------------------------------------------------------------------------


class Sink:
    def __init__(self):
        self.items = []

    def __call__(self, kind, channel, inst, ts, rid, payload, t):
        self.items.append((kind, payload))

    def kinds(self, kind):
        return [p for k, p in self.items if k == kind]


def trade(tid, ts, inst="BTC-USDT", channel="trades-all"):
    return orjson.dumps(
        {
            "arg": {"channel": channel, "instId": inst},
            "data": [
                {
                    "instId": inst,
                    "tradeId": str(tid),
                    "px": "1",
                    "sz": "1",
                    "side": "buy",
                    "ts": str(ts),
                }
            ],
        }
    )


def book(action, seq, prev, asks, bids, ts=1000, checksum=None, inst="BTC-USDT"):
    d = {"asks": asks, "bids": bids, "ts": str(ts), "prevSeqId": prev, "seqId": seq}
    if checksum is not None:
        d["checksum"] = checksum
    return orjson.dumps(
        {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [d]}
    )


def test_trades_deduplicated_and_reconnect_gap_has_exclusive_id_bounds():
    sink = Sink()
    p = Pipeline(sink)
    for tid in (10, 11, 12):
        p.feed(1, trade(tid, tid * 100), 0)
    p.conn_closed(1, 5_000, keys=(("trades-all", "BTC-USDT", None, None, None),))
    # after reconnect: the first frame predates the subscription (a duplicate), then a jump
    for tid in (12, 16, 17):
        p.feed(2, trade(tid, tid * 100), 6_000)
    assert [r["tradeId"] for r in sink.kinds("trades")] == ["10", "11", "12", "16", "17"]
    assert p.duplicates == 1
    (gap,) = p.gaps
    assert (gap.start_id, gap.end_id, gap.start_ms, gap.end_ms, gap.cause) == (
        "12",
        "16",
        1200,
        1600,
        "reconnect",
    )


def test_no_gap_when_reconnect_missed_nothing():
    p = Pipeline(Sink())
    p.feed(1, trade(10, 1000), 0)
    p.conn_closed(1, 5_000)
    p.feed(2, trade(11, 1100), 0)
    assert not p.gaps


def test_aggregated_trades_contiguity_uses_count():
    p = Pipeline(Sink())
    f = lambda tid, c: orjson.dumps(
        {
            "arg": {"channel": "trades", "instId": "X"},
            "data": [
                {
                    "instId": "X",
                    "tradeId": str(tid),
                    "px": "1",
                    "sz": "1",
                    "side": "buy",
                    "ts": "5",
                    "count": str(c),
                }
            ],
        }
    )
    p.feed(1, f(10, 1), 0)
    p.conn_closed(1, 0)
    p.feed(2, f(13, 3), 0)  # covers 11..13: nothing missed
    assert not p.gaps


def test_seq_gap_invalidates_only_that_book_and_publishes_nothing_until_resynced():
    sink = Sink()
    p = Pipeline(sink, full_every_ms=0)
    asks, bids = [["101", "1", "0", "1"]], [["99", "1", "0", "1"]]
    p.feed(1, book("snapshot", 10, -1, asks, bids), 0)
    p.feed(1, book("snapshot", 50, -1, asks, bids, inst="ETH-USDT"), 0)
    p.feed(1, book("update", 11, 10, [["102", "2", "0", "1"]], []), 0)
    n = len(sink.kinds("books"))
    p.feed(1, book("update", 13, 12, [["103", "2", "0", "1"]], []), 100)  # 12 skipped
    p.feed(1, book("update", 14, 13, [["104", "2", "0", "1"]], []), 150)  # buffered
    p.feed(1, book("update", 51, 50, [["105", "2", "0", "1"]], [], inst="ETH-USDT"), 150)
    books = sink.kinds("books")
    assert len(books) == n + 1 and books[-1]["instId"] == "ETH-USDT"
    # one resync in flight, for BTC only; a second failure does not add another
    jobs = p.due_resyncs(200)
    assert [(k, sz) for k, _e, sz in jobs] == [(("books", "BTC-USDT"), 400)]
    assert p.due_resyncs(300) == []
    key, epoch, _ = jobs[0]
    snap = {
        "asks": [["101", "1", "0", "1"], ["103", "2", "0", "1"]],
        "bids": [["99", "1", "0", "1"]],
        "seqId": 13,
        "ts": 1300,
    }
    assert p.offer_snapshot(key, snap, epoch, 400) == "done"
    last = sink.kinds("books")[-1]
    assert last["instId"] == "BTC-USDT" and last["seqId"] == 14
    assert [a[0] for a in last["asks"]] == ["101", "103", "104"]
    (gap,) = p.gaps
    assert gap.cause == "seq_gap" and gap.start_id == "11" and gap.end_id == "14"


def test_checksum_mismatch_triggers_resync_and_min_interval():
    sink = Sink()
    p = Pipeline(sink, full_every_ms=0, resync_min_interval_ms=1000)
    asks, bids = [["101", "1", "0", "1"]], [["99", "1", "0", "1"]]
    p.feed(1, book("snapshot", 10, -1, asks, bids), 0)
    p.feed(1, book("update", 11, 10, [["102", "2", "0", "1"]], [], checksum=12345), 0)
    (job,) = p.due_resyncs(0)
    snap = {"asks": asks, "bids": bids, "seqId": 11, "ts": 1}
    assert p.offer_snapshot(job[0], snap, job[1], 0) == "done"
    p.feed(1, book("update", 12, 11, [["102", "2", "0", "1"]], [], checksum=777), 10)
    assert p.due_resyncs(500) == []  # minimum interval between resyncs
    assert len(p.due_resyncs(1000)) == 1
    assert p.resync_count["checksum"] == 2


def test_update_before_any_snapshot_bootstraps_from_rest():
    sink = Sink()
    p = Pipeline(sink, full_every_ms=0)
    p.feed(1, book("update", 21, 20, [["102", "2", "0", "1"]], []), 0)
    (job,) = p.due_resyncs(0)
    snap = {"asks": [["101", "1", "0", "1"]], "bids": [["99", "1", "0", "1"]], "seqId": 20, "ts": 5}
    # the first buffered update was dropped as "gap" (fresh book); a later one chains
    p.feed(1, book("update", 22, 21, [["103", "1", "0", "1"]], []), 0)
    out = p.offer_snapshot(job[0], snap, job[1], 0)
    assert out in ("done", "again")


def test_rest_failures_fall_back_to_resubscribe():
    p = Pipeline(Sink(), resync_min_interval_ms=0)
    asks, bids = [["101", "1", "0", "1"]], [["99", "1", "0", "1"]]
    p.feed(1, book("snapshot", 10, -1, asks, bids), 0)
    p.feed(1, book("update", 13, 12, [], []), 0)
    outcome = None
    for t in range(0, 10_000, 1000):
        for key, epoch, _ in p.due_resyncs(t):
            outcome = p.offer_snapshot(key, None, epoch, t)
    assert outcome == "fallback" and list(p.resubscribe) == [("books", "BTC-USDT")]


def test_book_records_and_periodic_full_book():
    sink = Sink()
    p = Pipeline(sink, depth_stored=2, full_every_ms=1000)
    asks = [[str(100 + i), "1", "0", "1"] for i in range(1, 6)]
    bids = [[str(100 - i), "1", "0", "1"] for i in range(1, 6)]
    p.feed(1, book("snapshot", 10, -1, asks, bids), 0)
    p.feed(1, book("update", 11, 10, [], [["99", "3", "0", "1"]], ts=1500), 0)
    p.feed(1, book("update", 12, 11, [], [["98", "3", "0", "1"]], ts=2000), 0)
    recs = sink.kinds("books")
    # one full-depth record per window of the exchange time (1000..1999, 2000..): the first
    # update of each, whatever the local clock says
    assert [r["full"] for r in recs] == [False, True, False, False, True]
    assert recs[0]["depth"] == 2 and len(recs[0]["asks"]) == 2 and recs[1]["depth"] == 5
    assert recs[0]["ts"] == "1000" and recs[0]["seqId"] == 10
    assert [r["ts"] for r in recs if r["full"]] == ["1000", "2000"]


def test_two_feeders_pick_the_same_full_book_per_window():
    """The redundant feeders of a shard: same updates, same full-depth records (same _id),
    however far apart their clocks and start times are."""
    asks = [[str(100 + i), "1", "0", "1"] for i in range(1, 6)]
    bids = [[str(100 - i), "1", "0", "1"] for i in range(1, 6)]
    frames = [book("snapshot", 10, -1, asks, bids, ts=1000)] + [
        book("update", 10 + i, 9 + i, [], [[str(99 - i % 3), "2", "0", "1"]], ts=1000 + 300 * i)
        for i in range(1, 12)
    ]
    fulls = []
    for clock_offset in (0, 777):
        sink = Sink()
        p = Pipeline(sink, full_every_ms=1000)
        for i, f in enumerate(frames):
            p.feed(1, f, clock_offset + 13 * i)
        fulls.append([(r["ts"], r["seqId"]) for r in sink.kinds("books") if r["full"]])
    assert fulls[0] == fulls[1] and len(fulls[0]) == 4  # windows 1, 2, 3, 4 (ts 1000..4300)


def test_balance_and_position_routed_by_record_type():
    sink = Sink()
    p = Pipeline(sink)
    p.feed(
        1,
        orjson.dumps(
            {
                "arg": {"channel": "balance_and_position"},
                "data": [
                    {
                        "pTime": "5",
                        "eventType": "snapshot",
                        "balData": [{"ccy": "USDT", "cashBal": "10", "uTime": "5"}],
                        "posData": [
                            {
                                "posId": "1",
                                "instId": "BTC-USDT",
                                "instType": "MARGIN",
                                "pos": "1",
                                "uTime": "5",
                            }
                        ],
                    }
                ],
            }
        ),
        0,
    )
    assert [k for k, _ in sink.items] == ["balances", "positions"]


def test_ten_thousand_malformed_frames_counted_and_no_valid_frame_lost():
    sink = Sink()
    p = Pipeline(sink)
    junk = [
        b'{"arg":{"channel":"books"',
        b"\x00\xff junk",
        b"[1,2,3]",
        b'{"arg":{"channel":"trades","instId":"X"},"data":{"tradeId":1}}',
        b'{"event":"weird"}',
    ]
    limiter = LogLimiter(10.0)
    logged = 0
    tid = 1000
    for i in range(10_000):
        res = p.feed(1, junk[i % len(junk)], 0)
        if limiter.allow(type(res).__name__ + res.reason.split(":")[0], i * 0.001)[0]:
            logged += 1
        if i % 10 == 0:
            tid += 1
            p.feed(1, trade(tid, tid), 0)
    assert sum(p.parse_errors.values()) + sum(p.unknown.values()) == 10_000
    assert len(sink.kinds("trades")) == 1000
    assert logged <= 10  # rate-limited: one line per category per 10 s


def test_startup_gap_against_previous_watermarks():
    old = {("trades-all", "X"): {"ts": "1000", "id": "50"}, ("tickers", "X"): {"ts": "10"}}
    first = {
        ("trades-all", "X"): (2000, "55", 1),
        ("tickers", "X"): (20, "", 1),
        ("books", "Y"): (5, "1", 1),
    }
    gaps = {g.channel: g for g in startup_gaps(old, first)}
    assert gaps["trades-all"].start_id == "50" and gaps["trades-all"].end_id == "55"
    assert gaps["tickers"].cause == "startup" and "books" not in gaps
    assert not startup_gaps(old, {("trades-all", "X"): (2000, "51", 1)})


# ----- outbox ------------------------------------------------------------------------------------


def test_outbox_takes_what_is_queued_up_to_batch_max():
    ob = Outbox(batch_max=3, buffer_max=10)
    for i in range(5):
        ob.put("trades", "trades-all", "X", i, str(i), {"i": i}, 0.0)
    assert [it[5]["i"] for it in ob.take("trades", 3)] == [0, 1, 2]
    assert [it[5]["i"] for it in ob.take("trades", 3)] == [3, 4]
    ob.put("trades", "trades-all", "X", 9, "9", {"i": 9}, 0.0)
    assert len(ob.take("trades", 3)) == 1  # quiet: a batch of one, at once


def test_outbox_overflow_drops_oldest_and_reports_a_gap():
    ob = Outbox(batch_max=10, buffer_max=100)
    for i in range(1, 151):
        ob.put("trades", "trades-all", "X", 1000 + i, str(i), {"count": "1"}, 0.0)
    assert ob.backlog() <= 100 and ob.dropped >= 50
    (gap,) = ob.drain_overflow()
    assert gap.cause == "publish_overflow" and gap.start_id == "0"
    assert int(gap.end_id) == ob.dropped + 1 and gap.start_ms == 1001
    first_kept = ob.take("trades", 1)[0]
    assert int(first_kept[4]) == ob.dropped + 1
    ob.put_back("trades", [first_kept])
    assert ob.drain_overflow() == []


def test_a_price_that_is_not_a_number_invalidates_only_that_book_and_resyncs_it():
    sink = Sink()
    p = Pipeline(sink, full_every_ms=0)
    asks, bids = [["101", "1", "0", "1"]], [["99", "1", "0", "1"]]
    p.feed(1, book("snapshot", 10, -1, asks, bids), 0)
    p.feed(1, book("snapshot", 50, -1, asks, bids, inst="ETH-USDT"), 0)
    n = len(sink.kinds("books"))
    # the parser rejects the whole frame (a counted parse error, okx/schemas.py), so the next
    # update no longer chains: the book breaks there and resyncs
    p.feed(1, book("update", 11, 10, [["102", "2", "0", "1"], ["abc", "1", "0", "1"]], []), 100)
    assert p.parse_errors["books asks px decimal"] == 1
    p.feed(1, book("update", 12, 11, [["103", "1", "0", "1"]], []), 150)  # buffered
    p.feed(1, book("update", 51, 50, [["104", "2", "0", "1"]], [], inst="ETH-USDT"), 150)
    books = sink.kinds("books")
    assert [b["instId"] for b in books[n:]] == ["ETH-USDT"]  # nothing from the bad book
    assert p.book_status["gap"] == 1
    (job,) = p.due_resyncs(200)
    assert job[0] == ("books", "BTC-USDT")
    # a hostile REST snapshot is refused too, and the book keeps asking
    bad = {"asks": [["x", "1", "0", "1"]], "bids": bids, "seqId": 11, "ts": 1}
    assert p.offer_snapshot(job[0], bad, job[1], 300) == "again"
    assert p.book_status["rest_unusable"] == 1
    (job,) = p.due_resyncs(10_000)
    good = {
        "asks": [["101", "1", "0", "1"], ["102", "2", "0", "1"]],
        "bids": bids,
        "seqId": 12,
        "ts": 1200,
    }
    assert p.offer_snapshot(job[0], good, job[1], 10_000) == "done"
    assert sink.kinds("books")[-1]["instId"] == "BTC-USDT"
    (gap,) = p.gaps
    assert gap.cause == "seq_gap" and gap.instId == "BTC-USDT"


def test_publisher_is_woken_once_per_burst_not_per_record():
    ob = Outbox(batch_max=100, buffer_max=1000)
    ob._waiting = True  # the publisher is parked in wait()
    ob.hold("reader-a")
    for i in range(3):
        ob.put("trades", "trades-all", "X", i, str(i), {"i": i}, 0.0)
        assert not ob._wake.is_set()  # mid-burst: not woken at the first record
    ob.hold("reader-b")  # another socket's burst overlaps
    ob.release("reader-a")
    assert not ob._wake.is_set()  # reader-b is still mid-burst
    ob.release("reader-b")
    assert ob._wake.is_set() and not ob._waiting


def test_woken_publisher_lets_a_burst_that_started_meanwhile_finish_then_takes_both(monkeypatch):
    import threading

    import collector.outbox as outbox_mod

    ob = Outbox(batch_max=100, buffer_max=1000, settle_max_s=10.0)  # no timing in the test
    public_started = threading.Event()

    def gil_yield(_seconds):
        # What the publisher's yield lets happen: the other socket's reader, which was waiting
        # for the GIL with a burst in hand, starts it.
        ob.hold("public")
        public_started.set()

    monkeypatch.setattr(outbox_mod.time, "sleep", gil_yield)
    taken: list = []

    def publisher():
        ob.wait(10.0)
        taken.extend(ob.take("trades", 100))
        taken.extend(ob.take("tickers", 100))

    t = threading.Thread(target=publisher)
    t.start()
    wait_for(lambda: ob._waiting, 5, what="publisher parked")
    ob.hold("business")
    ob.put("trades", "trades-all", "X", 1, "1", {}, 0.0)
    ob.release("business")  # wakes the publisher; it yields the GIL once
    assert public_started.wait(5)
    ob.put("tickers", "tickers", "X", 1, "", {}, 0.0)
    ob.release("public")
    t.join(5)
    assert [it[1] for it in taken] == ["trades-all", "tickers"]  # one cycle, both bursts
