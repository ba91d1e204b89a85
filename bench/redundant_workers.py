"""Worker CPU per message with two redundant feeders against one, in the same run.

    .venv/bin/python -m bench.redundant_workers [--seconds 20] [--cycle-ms 5 50 400] [--rounds 3]

The feed (bench/redundant_feed.py: books5, books, full snapshots, tickers, trades, orders on 9
instruments) is cut into tasks as a feeder cuts it; the second feeder's copy holds the same
records cut at other moments, with its own producer id. Each run LPUSHes the tasks as the
feeder does (collector/celery_message.py) onto a private redis-server, then starts ONE real
worker in this process (solo pool: the production tasks, writers and history path) and takes
the process's CPU time (getrusage: user + system) from the worker being ready until the queue
and kombu's unacked hash are empty; redis-server's CPU comes from /proc. MongoDB is
bench/workers.py's BSON-encoding sink (the client side of MongoDB's cost: what a worker pays).

Per cycle mean, one and two feeders alternate within each round, in four modes, so every ratio
compares runs of the same minutes:

    before   no duplicate check (INGEST_DEDUPE_TTL_S=0), Python's GC threshold: main's worker
    dedupe   the duplicate check only
    gc       WORKER_GC_GEN0=50000 only (tasks/worker_gc.py)
    after    both: the workers' defaults, every task pushed (feeders without claims)
    claims   as after, and the two feeders push through the claim script (collector/claims.py),
             both at once (FEEDER_STANDBY_DELAY_MS=0): the records one already pushed never
             become the other's tasks. One feeder pushes plainly (no peer: no claims)
    standby  as claims, the second feeder a standby: its cycles --standby-ms later (the
             feeders' defaults)
"""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import statistics
import sys
import time

import redis

from bench.redundant_feed import Task, cut, feed, interleave
from bench.workers import SinkClient
from collector import claims
from collector.celery_message import task_message
from collector.claims import TaskSpec
from core import keys
from core import settings as settings_mod
from core.contract import INGEST_MIXED_TASK, INGEST_QUEUE
from core.settings import WorkerSettings as Settings
from localrun.redis_server import RedisServer
from tasks import clients
from tasks.app import app
from tasks.ingest_dedupe import DROPPED
from tasks.worker_gc import tune

# mode -> (INGEST_DEDUPE_TTL_S, WORKER_GC_GEN0, push through claims)
MODES = {
    "before": (0, 0, False),
    "dedupe": (30, 0, False),
    "gc": (0, 50_000, False),
    "after": (30, 50_000, False),
    "claims": (30, 50_000, True),
    "standby": (30, 50_000, True),
}


def push(broker: redis.Redis, tasks: list[Task], claimed: bool) -> None:
    """LPUSH the tasks as a feeder does, or, `claimed`, one claim script call per task (a
    publish cycle of one task), in the order the feeders published them."""
    if not claimed:
        messages = [task_message(t.name, t.args, INGEST_QUEUE, argsrepr="<bench>") for t in tasks]
        for i in range(0, len(messages), 1000):
            broker.lpush(INGEST_QUEUE, *messages[i : i + 1000])
        return
    script = broker.register_script(claims.SCRIPT)
    for t in tasks:
        mixed = t.name == INGEST_MIXED_TASK
        spec = TaskSpec(t.name, "<bench>", t.args[0] if mixed else [t.args[0]], mixed=mixed)
        call = claims.build([spec], "s1", 10_000)
        script(keys=call.keys, args=call.argv)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def server_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ)


def dropped() -> float:
    return sum(s.value for m in DROPPED.collect() for s in m.samples if s.name.endswith("_total"))


def run(
    server: RedisServer,
    tasks: list[Task],
    *,
    dedupe_ttl_s: int,
    gc_gen0: int = 0,
    claimed: bool = False,
) -> dict:
    from celery.contrib.testing.worker import start_worker

    settings_mod.use(
        Settings(
            redis_url=server.url, books_sample_ms=1000, dedupe_ttl_s=dedupe_ttl_s, gc_gen0=gc_gen0
        )
    )
    tune(gc_gen0)  # what worker_init does in a worker process
    broker = redis.Redis.from_url(server.url)
    broker.flushall()
    push(broker, tasks, claimed)
    pushed = broker.llen(INGEST_QUEUE)
    assert server.proc is not None
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=[INGEST_QUEUE], shutdown_timeout=30
    ):
        d0, c0, r0, t0 = dropped(), cpu_s(), server_cpu_s(server.proc.pid), time.perf_counter()
        while broker.llen(INGEST_QUEUE) or broker.hlen(keys.KOMBU_UNACKED):
            time.sleep(0.02)
        c1, r1, t1 = cpu_s(), server_cpu_s(server.proc.pid), time.perf_counter()
    state = redis.Redis.from_url(server.url.replace("/0", "/1"))
    seen_bytes = sum(
        state.memory_usage(k) or 0 for k in state.scan_iter(match=keys.SEEN_PREFIX + "*")
    )
    return {
        "cpu": c1 - c0,
        "redis": r1 - r0,
        "wall": t1 - t0,
        "seen_bytes": seen_bytes,
        "dropped": dropped() - d0,
        "tasks": pushed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="feed time per run")
    p.add_argument("--instruments", type=int, default=9)
    p.add_argument("--cycle-ms", type=float, nargs="+", default=[5.0, 50.0, 400.0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lag-ms", type=float, default=2.0, help="the second feeder's delay")
    p.add_argument("--standby-ms", type=float, default=100.0, help="the standby's delay")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    a = p.parse_args(argv)
    logging.disable(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the redis-server on the way out
    events = feed(a.seconds, a.instruments)
    print(f"feed: {len(events):,} records, {a.seconds:.0f} s on {a.instruments} instruments")
    print("one worker (solo pool), real redis-server, MongoDB = BSON-encoding sink; medians")
    print(
        f"{'cycle ms':>8} {'mode':>6} {'tasks 1/2':>11} {'us/msg 1':>9} {'us/msg 2':>9} "
        f"{'ratio':>6} {'2/before-1':>10} {'redis 1/2 us/msg':>17} {'seen KB':>8} {'dropped':>8}"
    )
    with RedisServer() as server:
        state = clients.make_redis_client(server.url.replace("/0", "/1"), 5)
        clients.install(mongo=SinkClient(), redis=state)
        app.conf.broker_url = server.url
        app.conf.worker_soft_shutdown_timeout = 0
        for cycle in a.cycle_ms:
            one = cut(events, producer="feeder-a", shard="s1", cycle_ms=cycle, seed=11)
            other = cut(events, producer="feeder-b", shard="s1", cycle_ms=cycle, seed=22)
            two = interleave(one, other, lag_ms=a.lag_ms)
            late = interleave(one, other, lag_ms=a.standby_ms)
            runs: dict[tuple[str, int], list[dict]] = {}
            for r in range(a.rounds):
                order = [(m, n) for m in a.modes for n in (1, 2)]
                for mode, n in order if r % 2 == 0 else order[::-1]:
                    ttl, gen0, claimed = MODES[mode]
                    runs.setdefault((mode, n), []).append(
                        run(
                            server,
                            one if n == 1 else late if mode == "standby" else two,
                            dedupe_ttl_s=ttl,
                            gc_gen0=gen0,
                            claimed=claimed and n == 2,
                        )
                    )
            tune(0)
            base = statistics.median(x["cpu"] for x in runs[(a.modes[0], 1)])
            for mode in a.modes:
                c1 = statistics.median(x["cpu"] for x in runs[(mode, 1)])
                c2 = statistics.median(x["cpu"] for x in runs[(mode, 2)])
                r1 = statistics.median(x["redis"] for x in runs[(mode, 1)])
                r2 = statistics.median(x["redis"] for x in runs[(mode, 2)])
                seen = max(x["seen_bytes"] for x in runs[(mode, 2)]) / 1024
                n = len(events)
                print(
                    f"{cycle:>8.0f} {mode:>6} {len(one):>5}/"
                    f"{min(x['tasks'] for x in runs[(mode, 2)]):<5} {c1 / n * 1e6:>9.1f} "
                    f"{c2 / n * 1e6:>9.1f} {c2 / c1:>6.2f} {c2 / base:>10.2f} "
                    f"{r1 / n * 1e6:>8.1f}/{r2 / n * 1e6:<8.1f} "
                    f"{seen:>8.0f} {min(x['dropped'] for x in runs[(mode, 2)]):>8.0f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
