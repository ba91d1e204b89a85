"""Soak: the whole collector at a realistic rate for a long time; does any process's memory grow?

    .venv/bin/python -m bench.soak                       # 60 minutes at ~2,000 messages/s
    .venv/bin/python -m bench.soak --minutes 5 --sample-seconds 5 --csv soak.csv

Not run in CI. Starts the same stack as bench/e2e.py (okxsim, feeder, redis-server with AOF,
`celery -A tasks worker`, MongoDB: MONGODB_URI, else --mongo sink or standin) and every
--sample-seconds writes one CSV row: elapsed seconds, the RSS (MB) of every process (feeder,
worker and each pool child, okxsim, redis-server, stand-in), Redis `used_memory` (MB), the
`ingest` queue length and the messages okxsim sent so far. At the end it fits a straight line to
each series over the second half of the run (the first half is warm-up: caches, book depth,
Redis keys being created) and reports, per series, the slope in MB per hour and whether it grows:
a series grows when its fitted rise over the second half is above both 2 MB and 5% of its
mean. The MongoDB stand-in keeps every document in memory and okxsim's trade ring fills up
(10,000 to 20,000 trades per instrument), so their growth is expected and reported as such; the
exit code is 3 when any other series grows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import common
from bench.common import (
    Sim,
    memory,
    process_table,
    start_feeder,
    start_mongo,
    start_redis,
    start_worker,
    stop_process,
)

EXPECTED_TO_GROW = {
    "mongo-standin": "the stand-in keeps every document in memory (it is not MongoDB)",
    "okxsim": "the exchange simulator, not the collector: its trade ring and candle history fill up",
}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(slope per second, mean) of a least-squares line through the points."""
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return (sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0), my


def growth_report(rows: list[dict[str, float]], series: list[str]) -> list[dict]:
    half = rows[len(rows) // 2 :]
    if len(half) < 3:
        return []
    span = half[-1]["elapsed_s"] - half[0]["elapsed_s"]
    out = []
    for name in series:
        pts = [(r["elapsed_s"], r[name]) for r in half if r.get(name) is not None]
        if len(pts) < 3:
            continue
        per_s, mean = fit(pts)
        rise = per_s * span
        grows = rise > 2.0 and rise > 0.05 * mean
        out.append(
            {
                "series": name,
                "mean_mb": round(mean, 1),
                "mb_per_hour": round(per_s * 3600, 2),
                "rise_over_second_half_mb": round(rise, 2),
                "grows": grows,
                "note": EXPECTED_TO_GROW.get(name.split(".")[0].replace("rss_", ""), ""),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sample-seconds", type=float, default=10.0)
    ap.add_argument("--target", type=float, default=2000.0, help="messages/s okxsim sends (about)")
    ap.add_argument("--csv", default="soak.csv")
    ap.add_argument(
        "--mongo",
        choices=("auto", "standin", "sink"),
        default="auto",
        help="auto: MONGODB_URI when set, else sink",
    )
    ap.add_argument("--pool", default="solo")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--channels", default=common.CHANNELS)
    ap.add_argument("--instruments", default=",".join(common.INSTRUMENTS))
    a = ap.parse_args(argv)
    if a.mongo == "auto":
        a.mongo = "real" if os.environ.get("MONGODB_URI") else "sink"

    logdir = Path(tempfile.mkdtemp(prefix="okx-soak-"))
    rows: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        rs = start_redis(logdir)
        stack.callback(rs.stop)
        broker = redis.Redis.from_url(rs.url)
        stack.callback(broker.close)
        mongo_proc = None
        if a.mongo == "sink":
            mongo_uri, label = (
                "benchsink://",
                "SINK (documents BSON-encoded and dropped; not MongoDB)",
            )
        else:
            mongo_uri, label, mongo_proc = start_mongo(logdir, standin=a.mongo == "standin")
            if mongo_proc is not None:
                stack.callback(stop_process, mongo_proc)
        # trades ring: okxsim keeps between N and 2N per instrument; a bounded ring keeps the
        # exchange's own memory flat, so only the collector's processes can grow
        sim = Sim(rate=1.0, logdir=logdir, trade_history=10_000)
        stack.callback(stop_process, sim.proc)
        env = common.base_env(rs.url, mongo_uri, sim, a.instruments, a.channels, "okex_soak")
        env["BENCH_SINK_DIR"] = ""
        worker = start_worker(
            env,
            logdir,
            "bench.sink_worker" if a.mongo == "sink" else "tasks",
            "ingest,history,backfill",
            a.pool,
            a.concurrency,
            "worker",
        )
        stack.callback(stop_process, worker, 40)
        feeder, _ = start_feeder(env, logdir)
        stack.callback(stop_process, feeder)
        time.sleep(3)
        sim.set_rate(10.0)
        time.sleep(1)
        s0 = sim.stats()["perChannel"]
        time.sleep(4)
        s1 = sim.stats()["perChannel"]
        per_ch = {k: (s1.get(k, 0) - s0.get(k, 0)) / 4 for k in s1}
        trades = sum(v for k, v in per_ch.items() if k.startswith("trades"))
        fixed = sum(v for k, v in per_ch.items() if not k.startswith("trades"))
        rate = max(0.2, (a.target - fixed) / (trades / 10)) if trades else 10.0
        sim.set_rate(rate)
        print(
            f"soak: {a.minutes:g} min at okxsim rate {rate:.1f} (~{a.target:,.0f} msg/s), "
            f"sampling every {a.sample_seconds:g}s -> {a.csv}\n  MongoDB: {label}\n  logs: {logdir}",
            flush=True,
        )

        procs = {
            "feeder": feeder.pid,
            "worker": worker.pid,
            "okxsim": sim.proc.pid,
            "redis": rs.proc.pid if rs.proc else None,
            "mongo-standin": mongo_proc.pid if mongo_proc else None,
        }
        t0 = time.monotonic()
        sent0 = sim.stats()["messagesSent"]
        end = t0 + a.minutes * 60
        columns: list[str] = []
        with open(a.csv, "w", newline="") as fh:
            writer: csv.DictWriter | None = None
            while time.monotonic() < end:
                for name, proc in (("feeder", feeder), ("worker", worker), ("okxsim", sim.proc)):
                    if proc.poll() is not None:
                        print(
                            f"soak: the {name} exited with {proc.returncode}; see {logdir}",
                            file=sys.stderr,
                        )
                        return 1
                table = process_table(procs)
                row: dict[str, float] = {"elapsed_s": round(time.monotonic() - t0, 1)}
                row.update({f"rss_{k}": v for k, v in memory(table).items()})
                row["redis_used_memory_mb"] = round(
                    int(broker.info("memory")["used_memory"]) / 2**20, 2
                )
                row["ingest_queue"] = broker.llen("ingest")
                row["messages_sent"] = sim.stats()["messagesSent"] - sent0
                if writer is None:
                    columns = list(row)
                    writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
                    writer.writeheader()
                writer.writerow(row)
                fh.flush()
                rows.append(row)
                mem = "  ".join(f"{k[4:]} {v:.0f}" for k, v in row.items() if k.startswith("rss_"))
                print(
                    f"  [{row['elapsed_s']:6.0f}s] RSS MB: {mem}  redis used "
                    f"{row['redis_used_memory_mb']:.1f} MB  queue {row['ingest_queue']}",
                    flush=True,
                )
                time.sleep(max(0.0, a.sample_seconds - (time.monotonic() - t0 - row["elapsed_s"])))
    series = [c for c in columns if c.startswith("rss_") or c == "redis_used_memory_mb"]
    report = growth_report(rows, series)
    elapsed = rows[-1]["elapsed_s"] if rows else 0
    rate_seen = rows[-1]["messages_sent"] / elapsed if elapsed else 0
    print(
        f"\nsoak: {elapsed / 60:.1f} min, {rate_seen:,.0f} msg/s on average, {len(rows)} samples; "
        "slope over the second half:"
    )
    for r in report:
        verdict = "GROWS" if r["grows"] else "flat"
        note = f"  ({r['note']})" if r["note"] and r["grows"] else ""
        print(
            f"  {r['series']:28} mean {r['mean_mb']:8.1f} MB  {r['mb_per_hour']:+8.2f} MB/h  "
            f"{verdict}{note}"
        )
    unexpected = [r["series"] for r in report if r["grows"] and not r["note"]]
    print("soak: no process grows" if not unexpected else f"soak: growing: {', '.join(unexpected)}")
    return 0 if not unexpected else 3


if __name__ == "__main__":
    raise SystemExit(main())
