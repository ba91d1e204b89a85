"""The feeder end to end: okxsim in-process, a real redis-server as broker and ledger, real
sockets. Tasks are read straight from the broker's `ingest` list (no worker)."""

from __future__ import annotations

import logging
import time
import urllib.request

import orjson
import pytest
import redis

from collector.feeder import Feeder
from core.settings import load
from localrun.redis_server import RedisServer, free_port
from tests.feeder_fixtures import INSTS, TaskLog, gaps, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def feeder_factory():
    feeders = []

    def make(sim, redis_url, env=None, **kw):
        kw.setdefault("instruments", ",".join(INSTS))
        kw.setdefault("channels", "books,trades,trades-all")
        kw.setdefault("ping_after_s", 1.0)
        kw.setdefault("pong_timeout_s", 1.0)
        kw.setdefault("health_port", free_port())
        kw.setdefault("feeder_id", "test-feeder")
        s = load(env=env or {}, redis_url=redis_url, ws_url=sim.ws_url, rest_url=sim.rest_url, **kw)
        f = Feeder(s).start()
        feeders.append(f)
        return f

    yield make
    for f in feeders:
        if not f.stopping.is_set():
            f.stop(5.0)


def fault(sim, **body):
    req = urllib.request.Request(
        sim.rest_url + "/sim/faults", data=orjson.dumps(body), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return orjson.loads(resp.read())


def truth(sim, inst):
    with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId={inst}", timeout=5) as r:
        return orjson.loads(r.read())["data"]


def all_live(f):
    return all(d.state.phase == "live" for d in f.drivers if d.is_alive() and not d.retired)


def covered_ids(records):
    """Trade ids a list of trade payloads covers (aggregated `trades` cover count ids)."""
    out = set()
    for r in records:
        tid, count = int(r["tradeId"]), int(r.get("count") or 1)
        out.update(range(tid - count + 1, tid + 1))
    return out


def check_no_unrecorded_loss(sim, log, client, channel):
    """Every truth trade between the first and last published one was published, or lies in a
    ledger gap of that channel/instId; gap bounds are published ids."""
    ledger = gaps(client)
    for inst in INSTS:
        recs = [r for r in log.records("trades") if r["channel"] == channel and r["instId"] == inst]
        got = covered_ids(recs)
        assert got, f"nothing published for {channel} {inst}"
        lo, hi = min(got), max(got)
        want = {int(t["tradeId"]) for t in truth(sim, inst) if lo <= int(t["tradeId"]) <= hi}
        windows = [
            (int(g["start_id"]), int(g["end_id"]))
            for g in ledger
            if g["channel"] == channel and g["instId"] == inst and g["start_id"] and g["end_id"]
        ]
        for s, e in windows:
            assert s in got and e in got, f"gap bounds {s}..{e} are not published ids"
            # exact bounds: everything strictly inside was missed, and something was
            inside = {i for i in want if s < i < e}
            assert inside and not inside & got, f"gap {s}..{e} is not exactly what was missed"
        missing = sorted(want - got)
        unexplained = [i for i in missing if not any(s < i < e for s, e in windows)]
        assert not unexplained, f"{channel} {inst}: {len(unexplained)} trades lost outside gaps"
        # each trade reaches the broker once
        ids = [int(r["tradeId"]) for r in recs]
        assert len(ids) == len(set(ids))
    return ledger


def test_recovers_from_drops_stalls_and_notices_without_unrecorded_loss(
    sim_factory, feeder_factory, redis_url, caplog
):
    caplog.set_level(logging.INFO)
    sim = sim_factory(bot_interval_s=0)
    # Faults come every few seconds here: a connection that stayed up 1 s (not 5) counts as
    # healthy again, so the reconnect backoff does not grow from one fault to the next.
    f = feeder_factory(sim, redis_url, healthy_after_s=1.0)
    client = redis.Redis.from_url(redis_url)
    log = TaskLog(client)
    wait_for(lambda: all_live(f) and f.publisher.published > 20, 10, what="feeder live")

    def healthy():
        now = time.monotonic()
        return all_live(f) and all(
            now - d.state.live_at >= 1.0 for d in f.drivers if d.is_alive() and not d.retired
        )

    plan = ["drop", "stall", "notice"] * 6 + ["drop", "stall"]  # 20 faults
    for kind in plan:
        wait_for(healthy, 10, what="connections healthy before the next fault")
        before = f.reconnects
        n_drivers = len(f.drivers)
        body = {"kind": kind}
        if kind == "stall":
            body["seconds"] = 3  # past ping_after + pong_timeout (1 s + 1 s here)
        if kind == "notice":
            body["seconds"] = 3
        fault(sim, **body)
        if kind == "notice":
            # a replacement opens, goes live, and the old connection is closed without a gap
            wait_for(lambda: len(f.drivers) > n_drivers, 5, what="replacement")
            wait_for(
                lambda: (
                    not f.drivers[-1].predecessor
                    and f.drivers[-1].state.phase == "live"
                    and all(not d.is_alive() for d in f.drivers[:-1] if d.endpoint == "public")
                ),
                8,
                what="old public connection retired",
            )
        else:
            wait_for(lambda: f.reconnects > before, 8, what=f"reconnect after {kind}")
        wait_for(lambda: all_live(f), 10, what=f"live again after {kind}")
        count = f.pipeline.records_out
        wait_for(lambda: f.pipeline.records_out > count + 5, 5, what="data flowing")
        log.poll()
    # a reconnect window is closed by the first record after it: wait until every one is
    wait_for(lambda: not f.pipeline.lost, 10, what="every reconnect window closed")
    time.sleep(1.2)  # one ledger cycle
    wait_for(lambda: f.outbox.backlog() == 0 and not f.ledger.pending_gaps, 5, what="flushed")
    wait_for(lambda: log.poll() and not f.publisher.repairs, 5, what="repairs sent")
    assert any("no pong within" in r.getMessage() for r in caplog.records)
    assert any(
        "retired" in r.getMessage() or "replacement is live" in r.getMessage()
        for r in caplog.records
    )
    for channel in ("trades-all", "trades"):
        ledger = check_no_unrecorded_loss(sim, log, client, channel)
    assert ledger, "drops and stalls must leave reconnect gaps"
    assert all(
        g["status"] == "open" and g["cause"] in ("reconnect", "stale", "seq_gap") for g in ledger
    )
    # each gap asked for its repair on the backfill queue
    assert sorted(log.repairs, key=int) == sorted((g["id"] for g in ledger), key=int)


def test_quiet_private_connection_is_kept_alive_by_ping(sim_factory, feeder_factory, redis_url):
    sim = sim_factory(idle_timeout=2.0, bot_interval_s=0)
    env = {
        "OKX_API_KEY": sim.config.api_key,
        "OKX_API_SECRET": sim.config.api_secret,
        "OKX_API_PASSPHRASE": sim.config.passphrase,
    }
    f = feeder_factory(sim, redis_url, env=env, channels="orders,trades", ping_after_s=0.8)
    wait_for(lambda: all_live(f), 5, what="private login + subscribe")
    private = next(d for d in f.drivers if d.endpoint == "private")
    time.sleep(5.0)  # 2.5x the idle cut-off, with no orders at all
    assert private.state.reconnects == 0 and private.state.phase == "live"


def test_seq_gap_and_corrupt_checksum_resync_one_book_within_2s(
    sim_factory, feeder_factory, redis_url
):
    sim = sim_factory(checksum="crc", tick_ms=50)
    f = feeder_factory(sim, redis_url, channels="books")
    wait_for(lambda: all_live(f) and len(f.pipeline.book_last) == 2, 10, what="books")
    p = f.pipeline
    for kind, cause in (("gap", "seq_gap"), ("corrupt", "checksum")):
        before = p.resync_count[cause]
        t0 = time.monotonic()
        fault(sim, kind=kind, instId="BTC-USDT")
        wait_for(lambda: p.resync_count[cause] > before, 5, what=f"{kind} detected")
        detected = time.monotonic()
        book = p.books[("books", "BTC-USDT")]
        # resynced within 2 s of the detection (the bound), 2.5 s of the injection
        wait_for(
            lambda: book.valid and ("books", "BTC-USDT") not in p.resyncs,
            2.0,
            interval=0.01,
            what=f"resync after {kind}",
        )
        assert time.monotonic() - detected < 2.0 and time.monotonic() - t0 < 2.5
        assert p.books[("books", "ETH-USDT")].valid
        time.sleep(1.0)  # respect the per-book minimum resync interval before the next fault
    assert p.resync_count["seq_gap"] == 1 and p.resync_count["checksum"] == 1
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: len(gaps(client)) >= 2, 5, what="ledger")
    causes = {(g["cause"], g["instId"]) for g in gaps(client)}
    assert causes == {("seq_gap", "BTC-USDT"), ("checksum", "BTC-USDT")}


def test_books_bootstrap_from_rest_without_ws_snapshot(sim_factory, feeder_factory, redis_url):
    sim = sim_factory(ws_snapshot=False, tick_ms=50)
    f = feeder_factory(sim, redis_url, channels="books")
    p = f.pipeline
    wait_for(
        lambda: all(b.valid for b in p.books.values()) and len(p.books) == 2,
        5,
        what="books bootstrapped from REST",
    )
    client = redis.Redis.from_url(redis_url)
    log = TaskLog(client)
    wait_for(lambda: log.poll().records("books"), 5, what="book records")
    rec = log.records("books")[0]
    assert set(rec) == {"instId", "channel", "ts", "seqId", "asks", "bids", "depth", "full"}


def test_broker_down_for_30s_then_back(sim_factory, feeder_factory):
    broker = RedisServer().start()
    port = broker.port
    try:
        sim = sim_factory(tick_ms=50)
        f = feeder_factory(
            sim, broker.url, channels="books,trades-all", batch_max=50, buffer_max=400
        )
        wait_for(lambda: all_live(f) and f.publisher.published > 10, 10, what="publishing")
        t_down = time.monotonic()
        broker.stop()
        wait_for(lambda: not f.publisher.broker_ok, 5, what="publisher notices")
        wait_for(lambda: f.outbox.dropped > 0, 25, what="overflow")
        time.sleep(max(0.0, 30.0 - (time.monotonic() - t_down)))  # the outage lasts 30 s
        assert all_live(f) and f.reconnects == 0  # the sockets never noticed
        received = f.pipeline.records_out
        broker = RedisServer(port=port).start()  # a new, empty broker
        wait_for(
            lambda: f.publisher.broker_ok and f.outbox.backlog() < 100, 10, what="backlog drained"
        )
        client = redis.Redis.from_url(broker.url)
        log = TaskLog(client)

        def first_published(inst):
            ids = [
                int(r["tradeId"])
                for r in log.records("trades")
                if r["channel"] == "trades-all" and r["instId"] == inst
            ]
            return min(ids) if ids else -1

        def overflow_gaps():
            return [
                g
                for g in gaps(client)
                if g["cause"] == "publish_overflow" and g["channel"] == "trades-all"
            ]

        def all_gaps_written():
            # the last overflow gap of each instrument reaches the first published trade
            log.poll()
            ends = {}
            for g in overflow_gaps():
                ends[g["instId"]] = max(ends.get(g["instId"], 0), int(g["end_id"]))
            return all(ends.get(inst) == first_published(inst) for inst in INSTS)

        wait_for(all_gaps_written, 10, what="overflow gaps in the ledger")
        assert f.pipeline.records_out > received
        assert log.records("books") and log.records("trades")
        ov = overflow_gaps()
        for inst in INSTS:
            got = sorted(
                int(r["tradeId"])
                for r in log.records("trades")
                if r["channel"] == "trades-all" and r["instId"] == inst
            )
            # What the outbox still held went out after the outage, oldest first and complete:
            # every truth trade from the first one it kept to the last one published is there.
            want = [
                int(t["tradeId"])
                for t in truth(sim, inst)
                if got[0] <= int(t["tradeId"]) <= got[-1]
            ]
            assert got == want
            # What it had to drop is in overflow gaps (one per second of dropping, exclusive
            # id bounds): they cover every trade before the first one kept, back to the
            # first one dropped, and end exactly where the published trades resume.
            windows = [(int(g["start_id"]), int(g["end_id"])) for g in ov if g["instId"] == inst]
            assert windows and max(e for _, e in windows) == got[0]
            first_dropped = min(s for s, _ in windows) + 1
            dropped = [
                int(t["tradeId"])
                for t in truth(sim, inst)
                if first_dropped <= int(t["tradeId"]) < got[0]
            ]
            assert dropped and all(any(s < i < e for s, e in windows) for i in dropped)
            assert all(int(g["start_ms"]) <= int(g["end_ms"]) for g in ov)
    finally:
        broker.stop()


def test_health_metrics_status_and_record(
    sim_factory, feeder_factory, redis_url, tmp_path, monkeypatch, capsys
):
    sim = sim_factory()
    rec = tmp_path / "rec.jsonl"
    f = feeder_factory(sim, redis_url, channels="books5,tickers", record_path=str(rec))
    wait_for(lambda: all_live(f) and f.publisher.published > 5, 10, what="live")
    port = f.health.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        h = orjson.loads(r.read())
    assert h["status"] == "ok" and h["connections"][0]["state"] == "live"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for name in (
        "feeder_messages_total",
        "feeder_subscription_last_message_age_seconds",
        "feeder_publish_latency_seconds_bucket",
        "feeder_publish_backlog",
        "feeder_reconnects_total",
        "feeder_bad_frames_total",
    ):
        assert name in text
    fault(sim, kind="malformed")
    wait_for(lambda: sum(f.pipeline.parse_errors.values()) >= 4, 5, what="malformed counted")
    wait_for(
        lambda: redis.Redis.from_url(redis_url).exists("feeder:test-feeder"), 8, what="heartbeat"
    )
    from collector.cli import main

    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "feeder test-feeder" in out and "books5:BTC-USDT" in out and "broker backlog" in out
    f.stop(5.0)
    lines = rec.read_bytes().splitlines()
    assert len(lines) >= 5 and all(
        set(orjson.loads(x)) == {"ts", "endpoint", "frame"} for x in lines
    )


def test_publisher_sends_every_kind_of_a_cycle_together_and_keeps_them_when_down(redis_url):
    """One cycle = one Redis round trip: a small cycle of several kinds is one mixed task, a
    cycle past batch_max records is one task per kind. When the broker is unreachable nothing
    is lost: every kind goes back to the outbox."""
    from collector.outbox import Outbox
    from collector.publisher import Publisher
    from tests.feeder_fixtures import drain_tasks

    def fill(outbox: Outbox) -> list:
        taken = []
        for kind, n in (("trades", 3), ("tickers", 2), ("books", 4)):
            for i in range(n):
                outbox.put(
                    kind,
                    kind,
                    "BTC-USDT",
                    1000 + i,
                    str(i),
                    {"kind": kind, "i": i},
                    time.monotonic(),
                )
            taken.append((kind, outbox.take(kind, 500)))
        return taken

    broker = redis.Redis.from_url(redis_url)
    small = Publisher(Outbox(batch_max=9), redis_url, "t")
    assert small._publish(fill(small.outbox))
    [(name, args)] = drain_tasks(broker)
    assert name == "tasks.ingest.mixed"
    assert [(b["kind"], [r["i"] for r in b["records"]]) for b in args[0]] == [
        ("trades", [0, 1, 2]),
        ("tickers", [0, 1]),
        ("books", [0, 1, 2, 3]),
    ]

    big = Publisher(Outbox(batch_max=8), redis_url, "t")
    assert big._publish(fill(big.outbox))
    tasks = drain_tasks(broker)
    assert sorted((name, len(args[0]["records"])) for name, args in tasks) == [
        ("tasks.ingest.books", 4),
        ("tasks.ingest.tickers", 2),
        ("tasks.ingest.trades", 3),
    ]
    assert big.published == 9 and len(big.latencies) == 9

    down = Publisher(Outbox(), f"redis://127.0.0.1:{free_port()}/0", "t")
    down.stopping.set()  # no backoff sleeps in this test
    down.deadline = time.monotonic()
    taken = fill(down.outbox)
    assert not down._publish(taken) and down.published == 0
    for kind, items in taken:
        down.outbox.put_back(kind, items)
    assert down.outbox.backlog_by_kind() == {
        **dict.fromkeys(down.outbox.queues, 0),
        "trades": 3,
        "tickers": 2,
        "books": 4,
    }
    down.run()  # stopping + past deadline: gives up, keeps them
    assert down.outbox.backlog() == 9
