"""Feeder benchmark: frames/s from the socket to published Celery batches, against okxsim at full
rate, versus a naive baseline (stdlib json, one task per frame) in the same run; socket->publish
latency at ~2,000 msg/s (okxsim's pushes spread over each tick, as OKX's are); resident memory
with 9 instruments of 400-level books.

    .venv/bin/python bench/feeder.py [--seconds 10] [--rate 100] [--soak-faults 20]

okxsim runs in its own process (on the other core); the feeder process is pinned to one core.
okxsim cannot push faster than about 18,000 frames/s there (Redis shares its core), which is
below what the feeder handles, so the feeder's one-core capacity is also measured against
bench/replay_source.py: the frames okxsim just sent, captured and replayed as fast as the feeder
reads them (each loop starting with its books snapshots, tradeIds shifted per loop). The figures
"frames_per_s" (wall clock) and "frames_per_cpu_s" (frames per second of the feeder process's CPU
time, all its threads) are reported for both sources; the naive baseline runs against the same
replay source.
--soak-faults N injects N drop/stall/notice faults (cycled) into a feeder run and checks that it
recovers from each one and that every trade is published or inside a ledger gap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import orjson  # noqa: E402
import redis  # noqa: E402
import websocket  # noqa: E402

from localrun.redis_server import RedisServer, free_port  # noqa: E402

INSTS = (
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "DOGE-USDT",
    "TON-USDT",
    "ETH-USDC",
    "BTC-USDC",
    "UNI-USDT",
    "PEPE-USDT",
)
CHANNELS = "books,books5,bbo-tbt,trades,tickers"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pin(pid: int, core: int | None) -> None:
    """Keep process `pid` (0: this one) on `core`, on a machine with more than one (None: leave
    it where the scheduler puts it)."""
    if core is not None and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(pid, {core})


def start_sim(
    rate: float, tick_ms: int = 100, core: int | None = 1, stagger: bool = False
) -> tuple[subprocess.Popen, str]:
    """okxsim in its own process. `stagger`: the instruments' pushes spread over each tick (as
    OKX's are) instead of one burst of all nine per tick (the shape for full-rate throughput)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "okxsim",
        "--port",
        str(port),
        "--rate",
        str(rate),
        "--tick-ms",
        str(tick_ms),
        "--bot-interval",
        "0",
        "--strict-limits",
        "off",
    ]
    if stagger:
        cmd.append("--stagger")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pin(proc.pid, core)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/api/v5/public/time", timeout=1).read()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("okxsim did not start")


DRAIN = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
while True:
    r.brpop(["ingest", "backfill"], timeout=1)
"""


def start_drain(redis_url: str, core: int | None = 1) -> subprocess.Popen:
    """Stands in for workers that keep up: pops every task the feeder publishes, so the
    publisher sees an empty queue (it lingers only while tasks wait, publisher.py)."""
    proc = subprocess.Popen([sys.executable, "-c", DRAIN, redis_url])
    pin(proc.pid, core)
    return proc


def run_feeder(addr: str, redis_url: str, seconds: float, **kw) -> dict:
    from collector.feeder import Feeder
    from core.settings import load

    s = load(
        env={},
        redis_url=redis_url,
        ws_url=f"ws://{addr}",
        rest_url=f"http://{addr}",
        instruments=",".join(INSTS),
        channels=kw.pop("channels", CHANNELS),
        health_port=0,
        feeder_id="bench",
        **kw,
    )
    f = Feeder(s).start()
    time.sleep(2.0)  # connect, subscribe, snapshots
    frames0 = sum(d.frames for d in f.drivers)
    pub0 = f.publisher.published
    batches0 = f.publisher.batches
    f.publisher.latencies.clear()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    frames = sum(d.frames for d in f.drivers) - frames0
    published = f.publisher.published - pub0
    batches = f.publisher.batches - batches0
    lat = sorted(f.publisher.latencies)
    mem = rss_mb()
    books = {k: b.sizes() for k, b in f.pipeline.books.items() if b.valid and k[0] == "books"}
    f.stop(9.0)
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None
    return {
        "frames_per_s": round(frames / dt),
        "records_published_per_s": round(published / dt),
        "batches_per_s": round(batches / dt),
        "avg_batch": round(published / max(1, batches), 1),
        "cpu_share": round(cpu / dt, 2),
        "frames_per_cpu_s": round(frames / max(cpu, 1e-9)),
        "latency_ms_p50": pct(0.5),
        "latency_ms_p99": pct(0.99),
        "rss_mb": round(mem, 1),
        "books_400": sum(1 for b in books.values() if min(b) >= 400),
    }


def run_naive(addr: str, redis_url: str, seconds: float) -> dict:
    """One task per frame, stdlib json, default send_task: the design the issue rejects."""
    from celery import Celery

    app = Celery("naive", broker=redis_url, set_as_current=False)
    app.conf.task_serializer = "json"
    wss = []
    for endpoint in ("public",):
        ws = websocket.create_connection(
            f"ws://{addr}/ws/v5/{endpoint}", timeout=5, skip_utf8_validation=True
        )
        args = [{"channel": c, "instId": i} for c in CHANNELS.split(",") for i in INSTS]
        ws.send(json.dumps({"op": "subscribe", "args": args}))
        wss.append(ws)
    ws = wss[0]
    ws.settimeout(0.2)
    frames = 0
    t0 = time.monotonic()
    end = t0 + seconds
    with app.producer_or_acquire() as producer:
        while time.monotonic() < end:
            try:
                _op, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            msg = json.loads(data)
            if "data" in msg:
                app.send_task("tasks.ingest.raw", args=[msg], queue="ingest", producer=producer)
            frames += 1
    dt = time.monotonic() - t0
    ws.close()
    return {"frames_per_s": round(frames / dt)}


def start_replay(
    sim_addr: str, seconds: float, total: int, core: int | None = 1
) -> tuple[subprocess.Popen, str, int]:
    """bench/replay_source.py recording okxsim for `seconds`, then serving `total` frames."""
    port = free_port()
    args = [{"channel": c, "instId": i} for c in CHANNELS.split(",") for i in INSTS]
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "replay_source.py"),
            "--port",
            str(port),
            "--capture",
            f"ws://{sim_addr}/ws/v5/public",
            "--subscribe",
            json.dumps(args),
            "--seconds",
            str(seconds),
            "--total",
            str(total),
        ],
        stdout=subprocess.PIPE,
    )
    pin(proc.pid, core)
    line = proc.stdout.readline().split()
    if not line or line[0] != b"ready":
        proc.kill()
        raise RuntimeError("replay source did not start")
    return proc, f"127.0.0.1:{port}", int(line[1])


def sim_rate(addr: str) -> int:
    """Frames/s okxsim pushes to one subscriber of CHANNELS (measured with a bare reader)."""
    ws = websocket.create_connection(
        f"ws://{addr}/ws/v5/public", timeout=5, skip_utf8_validation=True
    )
    args = [{"channel": c, "instId": i} for c in CHANNELS.split(",") for i in INSTS]
    ws.send(json.dumps({"op": "subscribe", "args": args}))
    time.sleep(1.0)
    ws.settimeout(0.5)
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        try:
            ws.recv_data()
            n += 1
        except websocket.WebSocketTimeoutException:
            pass
    ws.close()
    return round(n / (time.monotonic() - t0))


def soak(n_faults: int, redis_url: str) -> dict:
    """N faults (drop, stall, notice, cycled) against an in-process okxsim; recovery + no loss."""
    from collector.feeder import Feeder
    from core.settings import load
    from okxsim.config import SimConfig
    from okxsim.server import OkxSim

    sim = OkxSim(SimConfig(port=0, instruments=INSTS[:2], bot_interval_s=0)).start()
    s = load(
        env={},
        redis_url=redis_url,
        ws_url=sim.ws_url,
        rest_url=sim.rest_url,
        instruments=",".join(INSTS[:2]),
        channels="books,trades,trades-all",
        ping_after_s=1.0,
        pong_timeout_s=1.0,
        health_port=0,
        feeder_id="soak",
    )
    f = Feeder(s).start()
    r = redis.Redis.from_url(redis_url)
    published = set()
    kinds = ("drop", "stall", "notice")

    def live():
        return all(d.state.phase == "live" for d in f.drivers if d.is_alive() and not d.retired)

    def wait(cond, t):
        end = time.monotonic() + t
        while not cond():
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def drain():
        from core.contract import INGEST_QUEUE

        while (raw := r.rpop(INGEST_QUEUE)) is not None:
            import base64

            m = orjson.loads(raw)
            batch = orjson.loads(base64.b64decode(m["body"]))[0][0]
            if batch["kind"] == "trades":
                for rec in batch["records"]:
                    if rec["channel"] == "trades-all":
                        published.add((rec["instId"], int(rec["tradeId"])))

    recovered = 0
    wait(lambda: live() and f.publisher.published > 10, 10)
    t_start = time.monotonic()
    for i in range(n_faults):
        kind = kinds[i % 3]
        body = {"kind": kind}
        if kind != "drop":
            body["seconds"] = 3
        before, nd = f.reconnects, len(f.drivers)
        req = urllib.request.Request(
            sim.rest_url + "/sim/faults", data=orjson.dumps(body), method="POST"
        )
        urllib.request.urlopen(req, timeout=5).read()
        if kind == "notice":
            ok = wait(lambda: len(f.drivers) > nd, 5) and wait(
                lambda: all(not d.is_alive() for d in f.drivers[:-1] if d.endpoint == "public"), 8
            )
        else:
            ok = wait(lambda: f.reconnects > before, 8)
        n = f.pipeline.records_out
        ok = ok and wait(live, 15) and wait(lambda: f.pipeline.records_out > n + 5, 5)
        recovered += ok
        drain()
    wait(lambda: not f.pipeline.lost, 10)
    time.sleep(1.5)
    wait(lambda: f.outbox.backlog() == 0 and not f.ledger.pending_gaps, 5)
    drain()
    gaps = []
    from core import keys

    for gid in r.zrange(keys.GAPS_ALL, 0, -1):
        h = {k.decode(): v.decode() for k, v in r.hgetall(keys.gap_key(gid.decode())).items()}
        if h["channel"] == "trades-all" and h["start_id"] and h["end_id"]:
            gaps.append((h["instId"], int(h["start_id"]), int(h["end_id"])))
    unexplained = 0
    for inst in INSTS[:2]:
        mine = sorted(t for i, t in published if i == inst)
        with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId={inst}") as resp:
            truth = {int(t["tradeId"]) for t in orjson.loads(resp.read())["data"]}
        want = {t for t in truth if mine[0] <= t <= mine[-1]}
        for t in want - set(mine):
            if not any(g[0] == inst and g[1] < t < g[2] for g in gaps):
                unexplained += 1
    elapsed = time.monotonic() - t_start
    f.stop(9.0)
    sim.stop()
    return {
        "faults": n_faults,
        "recovered": recovered,
        "gaps": len(gaps),
        "trades_published": len(published),
        "trades_lost_outside_gaps": unexplained,
        "seconds": round(elapsed, 1),
    }


def against(source: subprocess.Popen, run, *args) -> dict:
    """run(*args) against a replay source, then stop the source whatever happened."""
    try:
        return run(*args)
    finally:
        source.kill()
        source.wait()


def measure(args: argparse.Namespace, redis_url: str, results: dict) -> None:
    """okxsim and replay runs of the feeder and of the naive baseline, then the latency run."""
    sim, addr = start_sim(args.rate)
    try:
        results["sim_frames_per_s"] = sim_rate(addr)
        results["feeder"] = run_feeder(addr, redis_url, args.seconds)
        redis.Redis.from_url(redis_url).flushall()
        results["naive"] = run_naive(addr, redis_url, args.seconds)
        redis.Redis.from_url(redis_url).flushall()
        # One core's capacity: the frames okxsim sends, replayed as fast as they are read
        # (more than any feeder reads in the run: the source must never run dry).
        total = int((args.seconds + 4) * 400_000)
        src, raddr, captured = start_replay(addr, args.capture_seconds, total)
        src2, raddr2, _ = start_replay(addr, 2.0, total // 10)
    finally:
        sim.terminate()
        sim.wait()
    results["replay_frames_captured"] = captured
    results["feeder_replay"] = against(src, run_feeder, raddr, redis_url, args.seconds)
    redis.Redis.from_url(redis_url).flushall()
    results["naive_replay"] = against(src2, run_naive, raddr2, redis_url, args.seconds)
    redis.Redis.from_url(redis_url).flushall()
    results["ratio_replay_feeder_vs_naive"] = round(
        results["feeder_replay"]["frames_per_s"] / max(1, results["naive_replay"]["frames_per_s"]),
        1,
    )
    # latency at about 2,000 msg/s: a calmer market, pushes spread over each tick as on OKX
    rate = args.latency_rate or max(1.0, args.rate * 2000 / max(1, results["sim_frames_per_s"]))
    sim, addr = start_sim(rate, stagger=True)
    try:
        results["latency_run_sim_frames_per_s"] = sim_rate(addr)
        results["latency_run"] = run_feeder(addr, redis_url, args.seconds)
    finally:
        sim.terminate()
        sim.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="okxsim rate for the ~2,000 msg/s latency run (0: calibrate)",
    )
    ap.add_argument("--soak-faults", type=int, default=0)
    ap.add_argument(
        "--capture-seconds",
        type=float,
        default=6.0,
        help="okxsim traffic captured for the replay-source run",
    )
    args = ap.parse_args()
    pin(0, 0)  # the feeder (and the naive loop) on one core
    results: dict = {}
    with RedisServer() as rs:
        rs_proc = rs.proc
        if rs_proc is not None:
            pin(rs_proc.pid, 1)
        if args.soak_faults:
            results["soak"] = soak(args.soak_faults, rs.url)
            print(json.dumps(results, indent=2))
            return
        drain = start_drain(rs.url)
        try:
            measure(args, rs.url, results)
        finally:
            drain.kill()
            drain.wait()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
