"""The fault matrix of issue #8: every fault, then recovery and backfill, then the stores must
equal okxsim's ground truth (0 missing, 0 duplicated, 0 invented) and the recovery time is
recorded. Compared: trades-all trades in MongoDB against /sim/truth/trades, and order events
(MongoDB `order` against /sim/truth/orders, every final state present; Redis order<N> numbers
one per stored event, so a redelivery numbered twice shows).

One stack (tests/fault_stack.py: okxsim, redis-server with AOF, MongoDB's wire protocol
(nx-27017) reached with pymongo through a fault proxy, a real `python -m collector` feeder and a
real `celery -A tasks worker`) serves every case in turn; a
case that kills processes leaves them to be restarted by the next case's `ready` fixture. The
comparison covers every trade from the first one the collector ever stored up to the newest
trade okxsim had made when the fault ended, so each case also re-proves all the earlier ones.

Recovery time = from the fault's end until the stores equal the truth and the broker and the
gap ledger are empty. The clock starts at the injection for faults the collector must notice by
itself (the last drop, the stall, the seqId gap, the bad checksum, the notice, the kill) and at
the end of outages (Redis back, MongoDB back, the 50011 window over, the last junk frame sent,
the processes restarted). The table is printed at the end of the module (`-s`) and written to
var/fault-matrix.md.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tasks.writers.indexes import indexes
from tests.fault_stack import HEALTHY_AFTER_S, ROOT, FaultStack
from tests.polling import wait_for

pytestmark = pytest.mark.integration

# Long enough for every path to run (pymongo's server selection and socket timeouts, the breaker
# opening, parked history, its drain after); bench/outage.py holds each fault for the 60 s
# and measures state freshness through it, which this matrix does not assert.
MONGO_OUTAGE_S = 20.0  # nothing listening: many server-selection timeouts (MONGODB_TIMEOUT_MS 1 s)
MONGO_SHORT_S = 10.0  # refused, hung and slow
RESULTS: list[dict] = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = FaultStack(tmp_path_factory.mktemp("fault-matrix"))
    try:
        yield s
    finally:
        s.stop()
        _report()


@pytest.fixture
def ready(stack):
    """Every process up, the feeder live and the stores already exact before the fault."""
    stack.ensure_running()
    wait_for(
        lambda: stack.exact(stack.mark()),
        60,
        interval=0.25,
        what="stores equal the truth before the fault\n" + stack.logs(),
    )
    return stack


def recovered(
    stack: FaultStack, case: str, fault_end: float, timeout: float = 60.0, note: str = ""
) -> dict:
    """Wait until the stores equal the truth through the newest trade at the fault's end;
    record and return the comparison."""
    through = stack.mark()
    try:
        wait_for(lambda: stack.exact(through), timeout, interval=0.25, what=f"{case} recovered")
    except AssertionError:
        comparison = stack.comparison(through)
        RESULTS.append({"case": case, "recovery_s": None, "comparison": comparison, "note": note})
        raise AssertionError(
            f"{case}: {comparison}, settled={stack.settled()}\n" + stack.logs()
        ) from None
    took = time.monotonic() - fault_end
    # the comparison that passed: a fresh one could catch a worker between its MongoDB and
    # Redis writes while the market keeps trading
    comparison = stack.last_comparison
    RESULTS.append({"case": case, "recovery_s": took, "comparison": comparison, "note": note})
    return comparison


def causes(stack: FaultStack) -> set[tuple[str, str, str]]:
    return {(g["cause"], g["channel"], g["status"]) for g in stack.gap_ledger()}


# ----- the cases, in an order where each leaves a clean stack for the next ------------------------


def test_worker_sigkill_mid_batch(ready):
    s = ready
    # the next ingest batch stops after its first record, inside the pool child
    s.pause_file.touch()
    reached = Path(str(s.pause_file) + ".reached")
    wait_for(reached.exists, 20, what="a batch paused mid-way")
    os.kill(s.pool_child(), signal.SIGKILL)  # the OOM killer, mid-batch
    end = time.monotonic()
    Path(str(s.pause_file) + ".held").unlink(missing_ok=True)
    reached.unlink()
    recovered(s, "worker SIGKILL mid-batch", end, note="pool child killed after 1 record")
    assert s.worker.poll() is None  # the pool replaced its child


def test_redis_restart_with_aof_mid_run(ready):
    s = ready
    s.restart_redis(down_s=3.0)
    end = time.monotonic()
    recovered(s, "Redis restart (AOF), 3 s down", end, note="broker + state + ledger")


def test_twenty_socket_drops(ready):
    # Each drop hits connections that have been live for HEALTHY_AFTER_S (FEEDER_HEALTHY_AFTER,
    # 1 s here), as on a network that flaps every few seconds. Back to back, the feeder's backoff
    # (rightly) grows towards its 30 s cap, and 20 drops would take minutes of deliberate waiting.
    s = ready
    for i in range(20):
        before = s.reconnects()
        last_drop = time.monotonic()
        assert s.fault(kind="drop")["connections"] >= 1
        wait_for(
            lambda: s.reconnects() > before and s.feeder_live(),
            15,
            interval=0.05,
            what=f"reconnect after drop {i + 1}",
        )
        if i < 19:
            time.sleep(HEALTHY_AFTER_S + 0.2)  # pacing between faults, not a wait for state
    end = last_drop
    recovered(s, "20 socket drops", end)
    assert ("reconnect", "trades-all", "filled") in causes(s)


def test_stall_past_the_keepalive(ready):
    # the feeder pings after 5 s of silence and gives up 2 s later; the stall lasts 9 s
    s = ready
    before = s.reconnects()
    end = time.monotonic()  # the clock runs from the stall's start: noticing it is recovery
    s.fault(kind="stall", seconds=9)
    wait_for(
        lambda: s.reconnects() > before and s.feeder_live(),
        20,
        interval=0.1,
        what="reconnect after the missing pong",
    )
    recovered(s, "stall past the keepalive (9 s)", end)


@pytest.mark.parametrize("kind, cause", [("gap", "seq_gap"), ("corrupt", "checksum")])
def test_book_integrity_faults(ready, kind, cause):
    s = ready
    end = time.monotonic()
    s.fault(kind=kind, instId="BTC-USDT")
    wait_for(
        lambda: (cause, "books", "unrepairable") in causes(s),
        15,
        interval=0.1,
        what=f"{cause} recorded (book history cannot be backfilled)",
    )
    name = "seqId gap" if kind == "gap" else "checksum mismatch (crc)"
    recovered(s, name, end, note="book resynced from REST; trades untouched")


def test_64008_notice(ready):
    s = ready
    end = time.monotonic()
    s.fault(kind="notice", seconds=3)
    # the old connections close 3 s after the notice; the replacements are already live
    time.sleep(3.0)  # the notice's announced delay
    wait_for(s.feeder_live, 15, interval=0.1, what="live after the 1012 close")
    recovered(s, "64008 notice", end)


def test_malformed_frames(ready):
    s = ready
    sent = 0
    while sent < 10_000:
        reply = s.fault(kind="malformed")
        sent += reply["frames"] * reply["connections"]
    end = time.monotonic()
    recovered(s, "10,000 malformed frames", end, note=f"{sent} junk frames")
    assert s.feeder.poll() is None


def test_rate_limit_storm_during_backfill(ready):
    # the feeder is away for 4 s, so its restart opens a startup gap; every REST call answers
    # 50011 for 8 s while backfill tries to repair it
    s = ready
    s.terminate(s.feeder)
    time.sleep(4.0)  # downtime: trades the socket never sees
    s.start_feeder()
    s.fault(kind="rate_limit", seconds=8)
    storm_end = time.monotonic() + 8
    wait_for(s.feeder_live, 30, interval=0.1, what="feeder back")
    wait_for(lambda: time.monotonic() > storm_end, 10, interval=0.1, what="the storm's end")
    recovered(s, "50011 storm during backfill (8 s)", storm_end)
    assert ("startup", "trades-all", "filled") in causes(s)


def test_sigterm_to_every_process(ready):
    s = ready
    took = {"feeder": s.terminate(s.feeder), "worker": s.terminate(s.worker)}
    assert all(t < 30 for t in took.values()), took  # inside Heroku's grace period
    assert s.feeder.returncode == 0, s.logs()
    time.sleep(2.0)  # the dyno is down for a moment
    s.start_worker()
    s.start_feeder()
    wait_for(s.feeder_live, 30, interval=0.1, what="feeder back")
    end = time.monotonic()
    recovered(
        s,
        "SIGTERM to every process",
        end,
        note="feeder {feeder:.1f} s, worker {worker:.1f} s to exit".format(**took),
    )


# MongoDB as pymongo meets it in a deployment (localrun/mongo_faults.py between the worker and
# the server): what must hold afterwards is the same as everywhere, nothing lost and nothing
# twice; how fresh the state stays meanwhile is another matter (bench/, the history design).
MONGO_FAULTS = [
    (
        "down",
        MONGO_OUTAGE_S,
        {},
        "MongoDB: nothing listening",
        "connects refused: pymongo waits out server selection (1 s here) each try",
    ),
    (
        "refuse",
        MONGO_SHORT_S,
        {},
        "MongoDB: accepts and resets",
        "every connection reset at once",
    ),
    (
        "hung",
        MONGO_SHORT_S,
        {},
        "MongoDB: hung",
        "accepted, never answered: socket timeouts, operations cancelled",
    ),
    (
        "slow",
        MONGO_SHORT_S,
        {"delay_s": 0.2},
        "MongoDB: slow, 200 ms a reply",
        "every reply 200 ms late; the backlog drains after",
    ),
]


@pytest.mark.parametrize(
    "mode, seconds, options, case, note", MONGO_FAULTS, ids=[f[0] for f in MONGO_FAULTS]
)
def test_mongodb_faults(ready, mode, seconds, options, case, note):
    s = ready
    t0 = time.monotonic()
    s.mongo_fault(mode, seconds, **options)
    end = time.monotonic()
    assert end - t0 >= seconds
    recovered(s, f"{case}, {seconds:.0f} s", end, timeout=120, note=note)
    assert s.mongo.connections_accepted > 0


def test_mongodb_comes_back_empty(ready):
    # last: the data before it is gone, so the comparison starts again from the wipe
    s = ready
    before = s.mark()
    s.wipe_mongo()
    end = time.monotonic()
    # The comparison runs from the first trade stored after the wipe through the mark that
    # recovered() takes. Take it once every instrument has traded since the wipe: an instrument
    # with no trade in the moments the wipe took had nothing to compare (window 0), however
    # well the stack recovered (seen in CI: BTC-USDT 0, ETH-USDT 9).
    wait_for(
        lambda: all(max(s.truth_ids(i), default=0) > before[i] for i in s.insts),
        30,
        interval=0.2,
        what="a trade on every instrument after the wipe",
    )
    comparison = recovered(
        s,
        "MongoDB back empty (data lost)",
        end,
        timeout=120,
        note="server wiped, same port; the workers recreate the indexes",
    )
    assert all(c["window"] > 0 for name, c in comparison.items() if name.startswith("trades"))
    db = s.mongo_reader[s.mongo_db]

    def indexes_back() -> bool:
        for coll, models in indexes(books_retention_s=0).items():
            have = [[k for k, _ in i["key"]] for i in db[coll].index_information().values()]
            if any(list(m.document["key"]) not in have for m in models):
                return False
        return True

    wait_for(indexes_back, 30, interval=0.5, what="indexes recreated after the wipe")


# ----- the table --------------------------------------------------------------------------------


def _report() -> None:
    lines = [
        "| fault | recovery (s) | trades compared | trades missing / duplicated / invented "
        "| final orders compared | orders missing / numbered twice / invented | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in RESULTS:
        c, o = r["comparison"], r["comparison"]["orders"]
        t = {
            k: sum(v[k] for name, v in c.items() if name.startswith("trades"))
            for k in ("missing", "duplicated", "extra", "window")
        }
        took = "FAILED" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(
            f"| {r['case']} | {took} | {t['window']} | {t['missing']} / "
            f"{t['duplicated']} / {t['extra']} | {o['window']} | {o['missing']} / "
            f"{o['duplicated']} / {o['extra']} | {r['note']} |"
        )
    table = "\n".join(lines) + "\n"
    out = ROOT / "var" / "fault-matrix.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table)
    print("\n" + table)
