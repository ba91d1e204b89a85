"""Outage bench: live state stays current while MongoDB or the state Redis is away, and afterwards
MongoDB equals okxsim's truth.

    .venv/bin/python -m bench.outage                      # 60 s per fault (~6 min)
    .venv/bin/python -m bench.outage --fault-seconds 20   # shorter
    .venv/bin/python -m bench.outage --json out.json

Every part is its own process, as in production: bench.sim_server (okxsim, calibrated to about
2,000 messages/s), `python -m collector`, two redis-servers (the broker, and the state on
STATE_REDIS_URL so that it can go away alone), the production worker (`celery -A tasks worker
-P prefork -c 2 -Q ingest,history,backfill`) and pymongo with a `mongodb://` URI to the
wire-protocol server (localrun/mongo_server.py) through the fault proxy
(localrun/mongo_faults.py). Faults, one after the other, each followed by a recovery pause:

    down   nothing listens on MongoDB's port (server selection timeouts)
    hung   MongoDB accepts and never answers (socket timeouts)
    slow   every MongoDB reply 200 ms late
    state  the state redis-server stopped, then restarted on its port

Per fault: the age of every ticker:<instId> and books5:<instId> hash (okxsim's clock minus the
hash's exchange ts, sampled every 100 ms) at p50 / p99 / max through the fault; the broker
Redis's used_memory at most, against HISTORY_PENDING_MAX_BYTES; the parked history at most; the
breaker states seen; for `state`, the trades MongoDB gained while the state Redis was away and
how long after its return every hash was current again; the CPU (cores) of each part and of the
whole machine (other jobs included) through the fault. At the end: the feeder stopped (it
flushes), the backlog drained, and MongoDB's trades compared with okxsim's truth per
instrument (0 missing, 0 not in the truth; duplicates are impossible by `_id`), with the gaps the
bound recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from pymongo import MongoClient

from bench import common
from bench.common import Sim, start_feeder, start_redis, start_worker, stop_process
from bench.e2e import channel_rates, check_trades, last_seen_trades, rate_for
from core import keys
from localrun.mongo_faults import MongoFaultProxy
from localrun.mongo_server import MongoServer
from localrun.redis_server import RedisServer

INSTRUMENTS = "BTC-USDT,ETH-USDT,SOL-USDT"  # okxsim's default load: 3 instruments
CHANNELS = "books,books5,trades-all,tickers"


class AgeProbe:
    """Samples the exchange-time age of every ticker and books5 hash, and the broker's memory."""

    def __init__(self, state_url: str, broker_url: str, sim: Sim, insts: list[str]):
        self.state = redis.Redis.from_url(state_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.broker = redis.Redis.from_url(broker_url)
        self.sim, self.insts = sim, insts
        self.rows: list[tuple[float, float | None]] = []  # (monotonic, worst age s | None: down)
        self.mem: list[tuple[float, int, int, str]] = []  # (monotonic, used, pending, breaker)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AgeProbe:
        self.thread.start()
        return self

    def _run(self) -> None:
        names = [keys.ticker(i) for i in self.insts] + [keys.books5(i) for i in self.insts]
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                pipe = self.state.pipeline(transaction=False)
                for n in names:
                    pipe.hget(n, "ts")
                got = pipe.execute()
                ages = [self.sim.now_ms() / 1000 - int(t) / 1000 for t in got if t is not None]
                self.rows.append((now, max(ages) if len(ages) == len(names) else None))
            except redis.RedisError:
                self.rows.append((now, None))
            with contextlib.suppress(redis.RedisError):
                used = int(self.broker.info("memory")["used_memory"])
                pend = int(self.broker.get(keys.HISTORY_PENDING_BYTES) or 0)
                state = self.broker.hget(keys.history_breaker(keys.MONGO_BREAKER), "state")
                self.mem.append((now, used, pend, (state or b"closed").decode()))
            self.stop.wait(0.1)

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        ages = [a for t, a in self.rows if t0 <= t <= t1 and a is not None]
        mem = [m for m in self.mem if t0 <= m[0] <= t1]
        return {
            "age_ms": common.latency_summary([a * 1000 for a in ages]) if ages else None,
            "samples": len(ages),
            "broker_used_memory_max_mb": round(max(m[1] for m in mem) / 1e6, 2) if mem else None,
            "pending_max_bytes": max(m[2] for m in mem) if mem else None,
            "breaker_states": sorted({m[3] for m in mem}),
        }

    def end(self) -> None:
        self.stop.set()
        self.thread.join(5)


def trades_count(mongo: MongoClient, db: str) -> int:
    with contextlib.suppress(Exception):
        return mongo[db]["trades"].estimated_document_count()
    return -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="messages/s from okxsim")
    ap.add_argument("--fault-seconds", type=float, default=60.0)
    ap.add_argument("--recover-seconds", type=float, default=15.0)
    ap.add_argument("--faults", default="down,hung,slow,state")
    ap.add_argument("--json", help="write the results to this file")
    a = ap.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="okx-outage-"))
    insts = INSTRUMENTS.split(",")
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "load_before": os.getloadavg(),
        "fault_seconds": a.fault_seconds,
        "faults": {},
    }

    def log(line: str) -> None:
        print(line, flush=True)

    with contextlib.ExitStack() as stack:
        broker_srv = start_redis(logdir)
        stack.callback(broker_srv.stop)
        state_dir = logdir / "state-redis"
        state_dir.mkdir()
        state_srv = RedisServer(workdir=str(state_dir)).start()
        stack.callback(lambda: state_srv.stop())
        mongo_srv = MongoServer(workdir=str(logdir / "mongo")).start()
        stack.callback(mongo_srv.stop)
        proxy = MongoFaultProxy(mongo_srv.port).start()
        stack.callback(proxy.stop)
        sim = Sim(rate=1.0, logdir=logdir)
        stack.callback(stop_process, sim.proc)
        db = f"okex_outage_{int(time.time())}"
        env = common.base_env(broker_srv.url, f"{proxy.uri}/{db}", sim, INSTRUMENTS, CHANNELS, db)
        env.pop("MONGO_CLIENT_FACTORY", None)  # pymongo, the production client
        env.update(STATE_REDIS_URL=state_srv.url, BOOKS_RETENTION_S="0", LOG_LEVEL="WARNING")
        bound = int(env.get("HISTORY_PENDING_MAX_BYTES", "8000000"))
        results["pending_bound_bytes"] = bound
        worker = start_worker(
            dict(env), logdir, "tasks", "ingest,history,backfill", "prefork", 2, "worker"
        )
        stack.callback(stop_process, worker, 40)
        feeder, _feeder_url = start_feeder(env, logdir)
        stack.callback(stop_process, feeder)
        direct = MongoClient(mongo_srv.uri, serverSelectionTimeoutMS=5000)
        stack.callback(direct.close)
        log(f"outage: logs in {logdir}; MongoDB: pymongo -> fault proxy -> nx-27017")

        time.sleep(3.0)
        sim.set_rate(10.0)
        time.sleep(1.0)
        per_ch = channel_rates(sim, 4.0)
        trade_rate = sum(v for k, v in per_ch.items() if k.startswith("trades"))
        fixed = sum(v for k, v in per_ch.items() if not k.startswith("trades"))
        rate = rate_for(a.rate, fixed, trade_rate / 10.0)
        sim.set_rate(rate)
        got = channel_rates(sim, 4.0)
        results["messages_per_s"] = round(sum(got.values()))
        log(f"  okxsim at {results['messages_per_s']:,} msg/s (rate {rate:.2f})")
        probe = AgeProbe(state_srv.url, broker_srv.url, sim, insts).start()
        stack.callback(probe.end)
        time.sleep(a.recover_seconds)
        t = time.monotonic()
        results["baseline"] = probe.window(t - a.recover_seconds + 3, t)
        log(f"  baseline: {results['baseline']}")

        def cpu() -> dict[str, float]:
            """CPU seconds so far of each part (the worker with its pool children)."""
            procs = {"worker": worker.pid, "feeder": feeder.pid, "nx-27017": mongo_srv.proc.pid,
                     "okxsim": sim.proc.pid}  # fmt: skip
            out = {n: common.cpu_seconds(p) for n, p in procs.items() if p}
            out["worker"] += sum(common.cpu_seconds(c) for c in common.children(worker.pid))
            out["machine"] = common.machine_busy_seconds()
            return out

        for fault in [f for f in a.faults.split(",") if f]:
            before = trades_count(direct, db)
            cpu0 = cpu()
            t0 = time.monotonic()
            if fault == "state":
                state_srv.stop()
            else:
                proxy.set_mode(fault)
            time.sleep(a.fault_seconds)
            t1 = time.monotonic()
            cpu1 = cpu()
            during_trades = trades_count(direct, db) - before
            if fault == "state":
                state_srv = RedisServer(port=state_srv.port, workdir=str(state_dir)).start()
            else:
                proxy.set_mode("pass")
            back = time.monotonic()
            time.sleep(a.recover_seconds)
            w = probe.window(t0 + 1.0, t1)  # the first second: the fault being noticed
            first = probe.window(t0, t0 + 1.0)
            w["first_second_age_max_ms"] = (first["age_ms"] or {}).get("max_ms")
            w["trades_stored_during"] = during_trades
            w["cpu_cores"] = {n: round((cpu1[n] - cpu0[n]) / (t1 - t0), 2) for n in cpu1}
            fresh = [t for t, age in probe.rows if t >= back and age is not None and age < 1.0]
            w["current_again_after_s"] = round(fresh[0] - back, 2) if fresh else None
            w["after"] = probe.window(back + 5, time.monotonic())
            results["faults"][fault] = w
            log(f"  {fault}: {orjson.dumps(w).decode()}")

        # ---- nothing lost ----
        stop_process(feeder)
        end = time.monotonic() + 180
        while time.monotonic() < end:
            b = redis.Redis.from_url(broker_srv.url)
            if (
                b.llen("ingest") == 0
                and b.hlen(keys.KOMBU_UNACKED) == 0
                and int(b.get(keys.HISTORY_PENDING_BYTES) or 0) == 0
            ):
                break
            time.sleep(0.5)
        broker = redis.Redis.from_url(broker_srv.url)
        gaps = [
            {
                k.decode(): v.decode()
                for k, v in broker.hgetall(keys.gap_key(g.decode())).items()
                if k in (b"channel", b"instId", b"cause", b"status")
            }
            for g in broker.zrange(keys.GAPS_ALL, 0, -1)
        ]
        stored: dict[str, set[int]] = {}
        for inst in insts:
            stored[inst] = {
                int(d["tradeId"])
                for d in direct[db]["trades"].find({"instId": inst}, {"tradeId": 1, "_id": 0})
            }
        check = check_trades(sim, stored, last_seen_trades(broker, insts))
        check["documents"] = direct[db]["trades"].count_documents({})
        check["distinct"] = sum(len(v) for v in stored.values())
        check["gaps"] = gaps
        results["nothing_lost"] = check
        log(
            f"  MongoDB vs okxsim: {check['truth_trades_in_window']} trades in the window, "
            f"missing {check['missing']}, not in truth {check['not_in_truth']}, "
            f"documents {check['documents']} (distinct {check['distinct']}); gaps {len(gaps)}"
        )
    if a.json:
        Path(a.json).write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    ok = results["nothing_lost"]["ok"] and all(
        (f["age_ms"] or {}).get("p99_ms", 1e9) < 1000 for f in results["faults"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
