"""End-to-end benchmark: okxsim -> feeder -> Redis broker -> Celery worker -> Redis state + MongoDB,
against the naive design (one task per frame, no batching, stdlib json) on the same stack, in the
same run.

    .venv/bin/python -m bench.e2e                       # both designs, default steps (~5 min)
    .venv/bin/python -m bench.e2e --mongo sink          # MongoDB replaced by a BSON-encoding sink
    .venv/bin/python -m bench.e2e --json out.json       # also write every figure as JSON

Every part runs as its own process, as in production: bench.sim_server (okxsim plus a live rate
control), `python -m collector`, redis-server (AOF on, as the demo runs it), the production
workers (`celery -A bench.stamped_worker`: `tasks` plus bench/write_stamp.py) and MongoDB
(MONGODB_URI when set; else the stand-in localrun/mongo_standin.py in its own process, or with
--mongo sink the production workers with a sink instead of MongoDB).

1. Latency at ~2,000 messages/s: the okxsim rate is calibrated from its per-channel counts, then
   every write of a `ticker:<instId>` or `books5:<instId>` hash is timed from the moment okxsim
   sent the frame to the moment Redis wrote the hash (its own clock, stored in the hash by
   bench/write_stamp.py; see common.LatencyProbe). `--stages` adds a second window that splits
   the latency into feeder / pickup / task from Redis's MONITOR stream (which inflates it).
2. Throughput: the okxsim rate is stepped up (without reconnecting); a step is *sustained* when
   the feeder reads what okxsim sends (>= 97%), the feeder's outbox stays small and the `ingest`
   queue does not grow. Stepping stops at the first step that is not sustained.
3. Nothing lost: the feeder is stopped (SIGTERM: it flushes), the queue drained, and the trades
   stored in MongoDB are compared with okxsim's ground truth (/sim/truth/trades) for the window
   they cover, per instrument: same ids, none missing, none extra.
4. The same steps with the naive design (its own feeder process and worker).

Per step: messages/s, queue backlog, latency, feeder CPU per 1,000 messages, CPU of every process
(where the time goes) and RSS of every process.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import common
from bench.common import (
    LatencyProbe,
    Sim,
    StageMonitor,
    cpu_seconds,
    histogram_quantiles,
    http_json,
    machine_busy_seconds,
    memory,
    process_table,
    start_feeder,
    start_mongo,
    start_redis,
    start_worker,
    stop_process,
)

NAIVE_FRAMES_KEY = "naive:frames"


# ----- calibration ---------------------------------------------------------------------------------


def channel_rates(sim: Sim, seconds: float) -> dict[str, float]:
    a = sim.stats()["perChannel"]
    time.sleep(seconds)
    b = sim.stats()["perChannel"]
    return {ch: (b.get(ch, 0) - a.get(ch, 0)) / seconds for ch in b}


def rate_for(target: float, fixed: float, per_rate: float) -> float:
    """okxsim rate giving about `target` messages/s: trades scale with the rate, the per-tick
    channels (books, books5, tickers, candles) barely do."""
    return max(0.2, (target - fixed) / per_rate) if per_rate > 0 else 1.0


# ----- the platform's floor ----------------------------------------------------------------------


def celery_floor(
    probe: LatencyProbe, broker: redis.Redis, n: int = 200, gap_s: float = 0.01
) -> dict:
    """What one Celery hop costs on this machine right now: `n` one-ticker tasks LPUSHed onto
    `ingest` (the feeder's own message, collector/celery_message.py), one at a time, each timed
    from the LPUSH call to Redis's write of its ticker hash (the worker's stamp, as for the
    collector's figure). No okxsim, no feeder: the broker round trips, kombu's unacked
    bookkeeping, Celery's dispatch and one state write. Host speed moves every latency figure;
    this one, taken in the same run, says how much of the collector's latency the platform
    alone takes."""
    from collector.celery_message import task_message
    from core import contract, keys

    pushed: dict[int, float] = {}
    t0 = time.monotonic()
    try:
        for i in range(n):
            ts = 1_000_000_000_000 + i  # far in the past: no live instrument uses it
            rec = {"instId": "FLOOR-PROBE", "ts": str(ts), "last": "1", "channel": "tickers"}
            batch = contract.make_batch(
                "tickers", [rec], source="ws", producer="bench-floor", batch=i, sent_ms=ts
            )
            msg = task_message(
                contract.INGEST_TASKS["tickers"],
                [batch],
                contract.INGEST_QUEUE,
                argsrepr="<floor probe>",
            )
            pushed[ts] = time.monotonic()
            broker.lpush(contract.INGEST_QUEUE, msg)
            time.sleep(gap_s)
        time.sleep(0.5)
    finally:
        broker.delete(keys.ticker("FLOOR-PROBE"))
    lat = [
        (t - pushed[ts]) * 1000
        for t, key, ts in probe.writes(t0, time.monotonic())
        if key == keys.ticker("FLOOR-PROBE") and ts in pushed
    ]
    return common.latency_summary(lat)


# ----- one measured step ----------------------------------------------------------------------------


class Design:
    """What differs between the real collector and the naive baseline, for the step loop."""

    def __init__(
        self,
        name: str,
        queue: str,
        frames: Callable[[], float],
        outbox: Callable[[], float],
        procs: dict[str, int | None],
        feeder_metrics: Callable[[], dict[str, float]] = dict,
    ):
        self.name, self.queue, self.frames, self.outbox, self.procs = (
            name,
            queue,
            frames,
            outbox,
            procs,
        )
        self.feeder_metrics = feeder_metrics


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


def measure_step(
    design: Design,
    sim: Sim,
    broker: redis.Redis,
    probe: LatencyProbe,
    rate: float,
    settle: float,
    seconds: float,
    stages: StageMonitor | None = None,
) -> dict:
    """One step at `rate`. With `stages`, the latency is also split per stage (MONITOR: it
    inflates every figure of the step, so the clean figures come from a step without it)."""
    sim.set_rate(rate)
    time.sleep(settle)
    if stages is not None:
        stages.start()
    table = process_table(design.procs)
    cpu0 = {n: cpu_seconds(p) for n, p in table.items()}
    busy0, fm0, own0 = machine_busy_seconds(), design.feeder_metrics(), time.process_time()
    sent0, frames0, t0 = sim.stats()["messagesSent"], design.frames(), time.monotonic()
    backlog: list[tuple[float, float]] = []
    outbox_max = 0.0
    while time.monotonic() - t0 < seconds:
        backlog.append((time.monotonic() - t0, broker.llen(design.queue)))
        outbox_max = max(outbox_max, design.outbox())
        time.sleep(0.25)
    t1 = time.monotonic()
    if stages is not None:
        stages.stop()
    sent1, frames1 = sim.stats()["messagesSent"], design.frames()
    dt = t1 - t0
    cpu = {n: round((cpu_seconds(p) - cpu0.get(n, 0.0)) / dt, 2) for n, p in table.items()}
    cpu["bench (probe, sampling)"] = round((time.process_time() - own0) / dt, 2)
    busy = (machine_busy_seconds() - busy0) / dt
    publish_latency = histogram_quantiles(
        fm0, design.feeder_metrics(), "feeder_publish_latency_seconds"
    )
    sent_rate, read_rate = (sent1 - sent0) / dt, (frames1 - frames0) / dt
    q_slope = slope(backlog)
    q_end = backlog[-1][1] if backlog else 0
    reasons = []
    # (an absolute floor too: at ~100 msg/s, 3% is a handful of frames in flight at the edges)
    if read_rate < 0.97 * sent_rate and (sent_rate - read_rate) * dt > 100:
        reasons.append(f"feeder reads {read_rate:,.0f}/s of {sent_rate:,.0f}/s sent")
    if q_slope * seconds > 50 and q_end > 50:  # a burst that drains again is not growth
        reasons.append(f"queue grows {q_slope:+.1f} tasks/s (ends at {q_end:.0f})")
    elif q_end > 200:
        reasons.append(f"queue still holds {q_end:.0f} tasks at the end")
    if outbox_max > 20_000:
        reasons.append(f"feeder outbox reached {outbox_max:,.0f} records")
    feeder_cpu = cpu.get("feeder", 0.0) * dt
    return {
        "rate": round(rate, 2),
        "sent_per_s": round(sent_rate),
        "read_per_s": round(read_rate),
        "queue_max": max((v for _, v in backlog), default=0),
        "queue_end": q_end,
        "queue_slope_per_s": round(q_slope, 2),
        "outbox_max": outbox_max,
        "sustained": not reasons,
        "why_not": "; ".join(reasons),
        **latency_fields(probe.window(t0, t1)),
        **({"latency_stages": stages.stages(t0, t1)} if stages is not None else {}),
        "feeder_cpu_ms_per_1000": round(
            1000 * feeder_cpu / max(1.0, (frames1 - frames0) / 1000), 2
        ),
        "feeder_publish_latency": publish_latency,
        "cpu_cores": cpu,
        "other_load_cores": round(busy - sum(cpu.values()), 2),
        "rss_mb": memory(table),
    }


def latency_fields(window: dict) -> dict:
    """latency_write: okxsim send -> Redis's write (the figure; n = 0 for a design whose
    workers do not stamp their writes, the naive one); latency: send -> seen by a keyspace
    subscriber, with `from_ts` (exchange ts -> seen); latency_trades_seen: send -> a trade is
    the newest in its `trades:<instId>` set, seen by the subscriber."""
    return {
        "latency_write": window["write"],
        "latency": dict(window["seen"], from_ts=window["from_ts"]),
        "latency_trades_seen": window["trades_seen"],
    }


def run_steps(
    design: Design,
    sim: Sim,
    broker: redis.Redis,
    probe: LatencyProbe,
    targets: list[float],
    calib: tuple[float, float],
    settle: float,
    seconds: float,
    log: Callable[[str], None],
) -> list[dict]:
    steps = []
    for target in targets:
        step = measure_step(design, sim, broker, probe, rate_for(target, *calib), settle, seconds)
        step["target_per_s"] = target
        steps.append(step)
        lat = step["latency_write"] if step["latency_write"].get("n") else step["latency"]
        log(
            f"  {design.name:7} target {target:>7,.0f}/s  sent {step['sent_per_s']:>7,}/s  "
            f"read {step['read_per_s']:>7,}/s  queue max {step['queue_max']:>5.0f}  "
            f"p50 {lat.get('p50_ms', '-')} p99 {lat.get('p99_ms', '-')} ms  "
            f"feeder {step['feeder_cpu_ms_per_1000']} ms CPU/1k  other load "
            f"{step['other_load_cores']} cores  "
            f"{'sustained' if step['sustained'] else 'NOT sustained: ' + step['why_not']}"
        )
        if not step["sustained"]:
            break
    return steps


def best(steps: list[dict]) -> dict | None:
    ok = [s for s in steps if s["sustained"]]
    return max(ok, key=lambda s: s["sent_per_s"]) if ok else None


def wait_drained(broker: redis.Redis, queue: str, deadline_s: float) -> bool:
    from core.keys import KOMBU_UNACKED

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        # kombu keeps fetched-but-unacked messages in the `unacked` hash (late ack)
        if broker.llen(queue) == 0 and broker.hlen(KOMBU_UNACKED) == 0:
            return True
        time.sleep(0.2)
    return False


# ----- nothing lost -----------------------------------------------------------------------------------


def stored_trade_ids(
    mongo_mode: str, mongo_uri: str, db_name: str, sink_dir: Path, insts: list[str]
) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {i: set() for i in insts}
    if mongo_mode == "sink":
        for f in sink_dir.glob("trades-*.txt"):
            for line in f.read_text().splitlines():
                inst, tid = line.split()
                out.setdefault(inst, set()).add(int(tid))
        return out
    from localrun.mongo_standin import client_for as make_mongo_client

    client = make_mongo_client(mongo_uri, 10_000)
    coll = client[db_name]["trades"]
    for inst in insts:
        out[inst] = {
            int(d["tradeId"]) for d in coll.find({"instId": inst}, {"tradeId": 1, "_id": 0})
        }
    with contextlib.suppress(Exception):
        client.close()
    return out


def check_trades(sim: Sim, stored: dict[str, set[int]], last_seen: dict[str, int]) -> dict:
    """Per instrument, the streamed window runs from the first stored trade to the last trade the
    feeder saw (its watermark, written when it stopped): every truth trade in it must be stored,
    and nothing stored may be missing from the truth."""
    missing = extra = total = 0
    per_inst: dict[str, Any] = {}
    for inst, ids in stored.items():
        if not ids or inst not in last_seen:
            per_inst[inst] = "no trades stored" if not ids else "no watermark"
            missing += 1
            continue
        lo, hi = min(ids), last_seen[inst]
        truth = {int(t["tradeId"]) for t in sim.truth_trades(inst)}
        want = {t for t in truth if lo <= t <= hi}
        m, x = len(want - ids), len(ids - truth)
        missing, extra, total = missing + m, extra + x, total + len(want)
        per_inst[inst] = {"window": [lo, hi], "truth": len(want), "missing": m, "not_in_truth": x}
    return {
        "truth_trades_in_window": total,
        "missing": missing,
        "not_in_truth": extra,
        "ok": missing == 0 and extra == 0 and total > 0,
        "per_instrument": per_inst,
    }


def last_seen_trades(broker: redis.Redis, insts: list[str]) -> dict[str, int]:
    """The feeder's trades-all watermark per instrument: the last tradeId it received."""
    from core.keys import watermark_key

    out = {}
    for inst in insts:
        tid = broker.hget(watermark_key("trades-all", inst), "id")
        if tid:
            out[inst] = int(tid)
    return out


# ----- the run ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--targets",
        default="5000,10000,20000,30000,40000,50000,60000,70000,80000",
        help="messages/s steps for the collector",
    )
    ap.add_argument(
        "--naive-targets",
        default="200,300,400,500,600,800,1000,1500",
        help="messages/s steps for the naive design",
    )
    ap.add_argument("--latency-target", type=float, default=2000.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--step-seconds", type=float, default=8.0)
    ap.add_argument("--settle-seconds", type=float, default=3.0)
    ap.add_argument("--pool", default="solo", help="worker pool (solo | prefork | threads)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument(
        "--mongo",
        choices=("auto", "standin", "sink"),
        default="auto",
        help="auto: MONGODB_URI when set, else sink; standin: localrun/mongo_standin.py "
        "(mongomock: it, not the collector, is then the bottleneck); sink: the "
        "workers BSON-encode each document and drop it",
    )
    ap.add_argument("--channels", default=common.CHANNELS)
    ap.add_argument("--instruments", default=",".join(common.INSTRUMENTS))
    ap.add_argument(
        "--burst",
        action="store_true",
        help="okxsim pushes every instrument at the same instant of each 100 ms tick "
        "(default: spread over the tick, as OKX's pushes are)",
    )
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument(
        "--stages",
        action="store_true",
        help="after the latency window, one more at the same rate split per stage "
        "from Redis's MONITOR (which inflates it: a split, not a figure)",
    )
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    a = ap.parse_args(argv)

    logdir = Path(tempfile.mkdtemp(prefix="okx-e2e-"))
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "load_before": os.getloadavg(),
        "pool": a.pool,
        "concurrency": a.concurrency,
        "channels": a.channels,
        "instruments": a.instruments,
        "okxsim_pushes": "burst per tick" if a.burst else "spread over each tick",
    }

    def log(line: str) -> None:
        print(line, flush=True)

    with contextlib.ExitStack() as stack:
        rs = start_redis(logdir)
        stack.callback(rs.stop)
        broker = redis.Redis.from_url(rs.url)
        stack.callback(broker.close)
        if a.mongo == "auto":
            a.mongo = "real" if os.environ.get("MONGODB_URI") else "sink"
        if a.mongo == "sink":
            mongo_uri, mongo_proc = "benchsink://sink", None  # a host: MONGODB_URI must parse
            mongo_label = (
                "SINK, not MongoDB: the workers BSON-encode every document as pymongo "
                "would and drop it (set MONGODB_URI for a real one, --mongo standin for "
                "the in-memory stand-in)"
            )
        else:
            mongo_uri, mongo_label, mongo_proc = start_mongo(logdir, standin=a.mongo == "standin")
        if mongo_proc is not None:
            stack.callback(stop_process, mongo_proc)
        sim = Sim(rate=1.0, logdir=logdir, stagger=not a.burst)
        stack.callback(stop_process, sim.proc)
        results["mongodb"] = mongo_label
        db_name = f"okex_e2e_{int(time.time())}"
        env = common.base_env(rs.url, mongo_uri, sim, a.instruments, a.channels, db_name)
        log(
            f"e2e: logs in {logdir}\n  MongoDB: {mongo_label}\n  worker pool {a.pool} "
            f"-c {a.concurrency}; channels {a.channels}; {len(a.instruments.split(','))} instruments"
        )

        probe = LatencyProbe(rs.url, sim).start()
        stack.callback(probe.stop)

        # ---- the collector ----
        sink_dir = logdir / "sink"
        sink_dir.mkdir()
        worker_env = dict(env, BENCH_SINK_DIR=str(sink_dir))
        worker = start_worker(
            worker_env,
            logdir,
            "bench.sink_worker" if a.mongo == "sink" else "bench.stamped_worker",
            "ingest,history,backfill",
            a.pool,
            a.concurrency,
            "worker",
        )
        stack.callback(stop_process, worker, 40)
        feeder, feeder_url = start_feeder(env, logdir)
        stack.callback(stop_process, feeder)

        def feeder_frames() -> float:
            return common.metrics(feeder_url + "/metrics").get("feeder_frames_total", 0.0)

        def feeder_outbox() -> float:
            return http_json(feeder_url + "/healthz").get("backlog", 0)

        design = Design(
            "batched",
            "ingest",
            feeder_frames,
            feeder_outbox,
            {
                "feeder": feeder.pid,
                "worker": worker.pid,
                "okxsim": sim.proc.pid,
                "redis": rs.proc.pid if rs.proc else None,
                "mongo-standin": mongo_proc.pid if mongo_proc else None,
            },
            lambda: common.metrics(feeder_url + "/metrics"),
        )
        time.sleep(3.0)  # connect, subscribe, snapshots
        sim.set_rate(10.0)
        time.sleep(1.0)
        per_ch = channel_rates(sim, 4.0)
        trade_rate = sum(v for k, v in per_ch.items() if k.startswith("trades"))
        fixed = sum(v for k, v in per_ch.items() if not k.startswith("trades"))
        calib = (fixed, trade_rate / 10.0)
        results["calibration"] = {
            "per_channel_at_rate_10": {k: round(v) for k, v in per_ch.items()},
            "fixed_per_s": round(fixed),
            "per_rate_unit": round(calib[1], 1),
        }
        log(
            f"  calibration at okxsim rate 10: {round(fixed + trade_rate):,} msg/s "
            f"({round(fixed):,} per-tick channels + {round(trade_rate):,} trades)"
        )

        lat_rate = rate_for(a.latency_target, *calib)
        results["batched_latency"] = measure_step(
            design, sim, broker, probe, lat_rate, a.settle_seconds, a.latency_seconds
        )
        log_latency = results["batched_latency"]
        log(
            f"  batched latency at {log_latency['sent_per_s']:,} msg/s: send -> Redis write "
            f"{log_latency['latency_write']}; send -> seen by a subscriber {log_latency['latency']}; "
            f"trades, send -> seen {log_latency['latency_trades_seen']}"
        )
        if a.stages:
            step = measure_step(
                design,
                sim,
                broker,
                probe,
                lat_rate,
                a.settle_seconds,
                a.latency_seconds,
                StageMonitor(rs.url, sim),
            )
            results["latency_stages"] = step["latency_stages"]
            log(f"  per stage, under MONITOR (inflated): {results['latency_stages']}")
        sim.set_rate(0.2)  # a quiet market while the floor is measured
        time.sleep(1.0)
        results["celery_floor"] = celery_floor(probe, broker)
        log(
            f"  platform floor (one Celery hop, LPUSH -> task -> Redis write): "
            f"{results['celery_floor']}"
        )
        targets = [float(t) for t in a.targets.split(",") if t]
        results["batched_steps"] = run_steps(
            design, sim, broker, probe, targets, calib, a.settle_seconds, a.step_seconds, log
        )

        # ---- nothing lost ----
        sim.set_rate(lat_rate)
        stop_process(feeder)
        drained = wait_drained(broker, "ingest", 180)
        stop_process(worker, 40)
        from core.keys import GAPS_ALL

        gaps = broker.zcard(GAPS_ALL)
        stored = stored_trade_ids(a.mongo, mongo_uri, db_name, sink_dir, a.instruments.split(","))
        check = check_trades(sim, stored, last_seen_trades(broker, a.instruments.split(",")))
        check.update(drained=drained, ledger_gaps=gaps)
        check["ok"] = check["ok"] and drained
        results["nothing_lost"] = check
        log(
            f"  nothing lost: {check['truth_trades_in_window']:,} truth trades in the streamed window, "
            f"missing {check['missing']}, not in truth {check['not_in_truth']}, "
            f"ledger gaps {gaps}, queue drained {drained}"
        )

        # ---- the naive design ----
        if not a.skip_naive:
            naive_targets = [float(t) for t in a.naive_targets.split(",") if t]
            sim.set_rate(rate_for(naive_targets[0], *calib))  # start quiet: no startup backlog
            broker.flushall()
            naive_worker = start_worker(
                env, logdir, "bench.naive_app", "naive", a.pool, a.concurrency, "naive-worker"
            )
            stack.callback(stop_process, naive_worker, 40)
            naive_pub = subprocess.Popen(
                [sys.executable, "-m", "bench.naive_app", "publish"],
                env=env,
                cwd=common.ROOT,
                stdout=open(logdir / "naive-feeder.log", "ab"),
                stderr=subprocess.STDOUT,
            )
            stack.callback(stop_process, naive_pub)
            time.sleep(3.0)
            naive = Design(
                "naive",
                "naive",
                lambda: float(broker.get(NAIVE_FRAMES_KEY) or 0),
                lambda: 0.0,
                {
                    "feeder": naive_pub.pid,
                    "worker": naive_worker.pid,
                    "okxsim": sim.proc.pid,
                    "redis": rs.proc.pid if rs.proc else None,
                    "mongo-standin": mongo_proc.pid if mongo_proc else None,
                },
            )
            results["naive_steps"] = run_steps(
                naive,
                sim,
                broker,
                probe,
                naive_targets,
                calib,
                a.settle_seconds,
                a.step_seconds,
                log,
            )
            # latency at the same ~2,000 msg/s, after the backlog of the last step drained
            sim.set_rate(rate_for(300, *calib))
            wait_drained(broker, "naive", 120)
            results["naive_latency"] = measure_step(
                naive, sim, broker, probe, lat_rate, a.settle_seconds, a.latency_seconds
            )
            nl = results["naive_latency"]
            log(
                f"  naive latency at {nl['sent_per_s']:,} msg/s (seen by a subscriber: its "
                f"writes carry no stamp): {nl['latency']} "
                f"({'sustained' if nl['sustained'] else 'NOT sustained: ' + nl['why_not']})"
            )
            stop_process(naive_pub)
            stop_process(naive_worker, 40)

        results["load_after"] = os.getloadavg()
    summary = summarize(results)
    results["summary"] = summary
    print(format_summary(results))
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if not a.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


def summarize(r: dict) -> dict:
    # the latency run is a measured step too (the lowest rate)
    b = best(r.get("batched_steps", []) + [r["batched_latency"]])
    n = best(r.get("naive_steps", []))
    lat = r["batched_latency"]["latency_write"]
    out = {
        "sustained_msgs_per_s": b["sent_per_s"] if b else 0,
        "naive_sustained_msgs_per_s": n["sent_per_s"] if n else 0,
        "ratio_vs_naive": round(b["sent_per_s"] / n["sent_per_s"], 1) if b and n else None,
        "latency_at_msgs_per_s": r["batched_latency"]["sent_per_s"],
        "latency": lat,
        "latency_seen_by_subscriber": r["batched_latency"]["latency"],
        "trades_latency_seen_by_subscriber": r["batched_latency"]["latency_trades_seen"],
        "celery_floor": r.get("celery_floor"),
        "feeder_cpu_ms_per_1000": (b or r["batched_latency"])["feeder_cpu_ms_per_1000"],
        "nothing_lost": r["nothing_lost"]["ok"],
    }
    if "latency_stages" in r:
        out["latency_stages_under_monitor"] = r["latency_stages"]
    if "naive_latency" in r:
        out["naive_latency_seen_by_subscriber"] = r["naive_latency"]["latency"]
    out["targets"] = {
        ">= 20,000 msg/s sustained, nothing lost": out["sustained_msgs_per_s"] >= 20_000
        and out["nothing_lost"],
        ">= 20x naive": (out["ratio_vs_naive"] or 0) >= 20,
        "p50 <= 2 ms at 2,000 msg/s": lat.get("p50_ms", 1e9) <= 2,
        "p99 <= 10 ms at 2,000 msg/s": lat.get("p99_ms", 1e9) <= 10,
    }
    return out


def format_summary(r: dict) -> str:
    s = r["summary"]
    b = best(r.get("batched_steps", []) + [r["batched_latency"]]) or r["batched_latency"]
    lines = [
        "",
        f"end-to-end benchmark, {r['date']}, {r['machine']}, load {r['load_before'][0]:.2f} before / "
        f"{r['load_after'][0]:.2f} after",
        f"  MongoDB: {r['mongodb']};  worker: -P {r['pool']} -c {r['concurrency']}",
        f"  sustained (collector): {s['sustained_msgs_per_s']:,} msg/s;  naive: "
        f"{s['naive_sustained_msgs_per_s']:,} msg/s;  ratio {s['ratio_vs_naive']}",
        f"  latency okxsim send -> Redis state write at {s['latency_at_msgs_per_s']:,} msg/s: "
        f"{s['latency']}",
        f"  (send -> write seen by a keyspace-notification subscriber: "
        f"{s['latency_seen_by_subscriber']})",
        f"  trades, send -> newest in trades:<instId> seen by the subscriber: "
        f"{s['trades_latency_seen_by_subscriber']}",
        f"  platform floor in this run (one Celery hop: LPUSH -> task -> Redis write): "
        f"{s['celery_floor']}",
    ]
    if "latency_stages_under_monitor" in s:
        lines.append(
            f"  per stage, in a second window under MONITOR (inflated, a split only): "
            f"{s['latency_stages_under_monitor']}"
        )
    if "naive_latency_seen_by_subscriber" in s:
        lines.append(
            f"  naive latency at the same rate (seen by a subscriber): "
            f"{s['naive_latency_seen_by_subscriber']}"
        )
    lines += [
        f"  feeder CPU per 1,000 messages (at the best sustained step): {s['feeder_cpu_ms_per_1000']} ms",
        f"  nothing lost: {s['nothing_lost']} ({r['nothing_lost']['truth_trades_in_window']:,} trades "
        f"compared, missing {r['nothing_lost']['missing']}, not in truth {r['nothing_lost']['not_in_truth']})",
        f"  CPU (cores) at the best sustained step: {b['cpu_cores']}",
        f"  RSS (MB) at the best sustained step: {b['rss_mb']}",
        "  targets: "
        + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in s["targets"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
