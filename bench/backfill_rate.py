"""Benchmark: a trades backfill far larger than OKX's history-trades limit (20 requests / 2 s),
against okxsim in strict mode, paced by okx.rest.ratelimit versus an unpaced client (the
baseline, same run, same okxsim). Reports figures only (no pass/fail):

    .venv/bin/python bench/backfill_rate.py [--pages 120] [--threads 2] [--processes 2] [--json]

For each client: requests sent, 50011 replies, accepted requests/s, the sustained rate against
the limit (requests after the first window's free burst, over the whole run), trades recovered
per second against the most the limit allows (20 requests x 100 trades / 2 s = 1,000 trades/s),
and whether the recovered trades equal okxsim's ground truth exactly.

Rows:
- one process, `--threads` instruments at once sharing one client: paced vs unpaced + retries;
- `--processes` processes (one instrument each, as prefork children or dynos would run them),
  all from one IP: limits shared through Redis (`RedisRateLimits`, a private redis-server) vs
  per-process limits (`RateLimits`, each process believing it has the whole budget) + retries.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import threading
import time
import urllib.request

import orjson
from prometheus_client import REGISTRY

from localrun.redis_server import RedisServer
from okx.rest import endpoints as history
from okx.rest.client import RestClient
from okx.rest.ratelimit import LIMITS, RateLimits, RedisRateLimits
from okxsim import OkxSim

ENDPOINT = "/market/history-trades"
LIMIT_N, LIMIT_WINDOW = LIMITS[ENDPOINT]
OUTCOMES = ("ok", "rate_limited", "retryable", "rejected", "bad_reply", "network")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_sent() -> float:
    return sum(sample("okx_rest_requests_total", endpoint=ENDPOINT, outcome=o) for o in OUTCOMES)


def truth(sim: OkxSim, inst: str) -> list[dict]:
    with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId={inst}", timeout=10) as r:
        return orjson.loads(r.read())["data"]


def backfill(client: RestClient, inst: str, lower: str, upper: str, out: list) -> None:
    for page in history.trades(client, inst, lower_id=lower, upper_id=upper):
        out.extend(page.records)


def run(label: str, client: RestClient, jobs: list[tuple[str, str, str, list[dict]]]) -> dict:
    """Backfill every (inst, lower, upper, expected) job in its own thread, sharing `client`."""
    sent0, limited0 = requests_sent(), sample("okx_rest_rate_limited_total", endpoint=ENDPOINT)
    results: list[list] = [[] for _ in jobs]
    threads = [
        threading.Thread(target=backfill, args=(client, inst, lo, hi, results[i]))
        for i, (inst, lo, hi, _) in enumerate(jobs)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    sent = requests_sent() - sent0
    limited = sample("okx_rest_rate_limited_total", endpoint=ENDPOINT) - limited0
    return figures(
        label,
        elapsed,
        sent,
        limited,
        [sorted(int(r["tradeId"]) for r in got) for got in results],
        jobs,
    )


def figures(
    label: str,
    elapsed: float,
    sent: float,
    limited: float,
    got_ids: list[list[int]],
    jobs: list[tuple[str, str, str, list[dict]]],
) -> dict:
    exact = all(
        got == [int(t["tradeId"]) for t in want] for got, (_, _, _, want) in zip(got_ids, jobs)
    )
    trades = sum(len(g) for g in got_ids)
    return {
        "client": label,
        "seconds": round(elapsed, 2),
        "requests": int(sent),
        "rejected_50011": int(limited),
        "requests_per_s": round(sent / elapsed, 2),
        "accepted_per_s": round((sent - limited) / elapsed, 2),
        "limit_per_s": LIMIT_N / LIMIT_WINDOW,
        "accepted_vs_limit": round((sent - limited) / elapsed / (LIMIT_N / LIMIT_WINDOW), 3),
        # after the first window's burst (which any client gets for free): the rate a long
        # backfill settles at
        "sustained_vs_limit": round(
            (sent - limited - LIMIT_N) / elapsed / (LIMIT_N / LIMIT_WINDOW), 3
        ),
        "trades": trades,
        "trades_per_s": round(trades / elapsed),
        "trades_per_s_vs_max": round(trades / elapsed / (LIMIT_N * 100 / LIMIT_WINDOW), 3),
        "exact": exact,
    }


def _process_backfill(rest_url: str, redis_url: str | None, job: tuple, barrier, out) -> None:
    """One child process: its own client (shared limits through Redis when redis_url is given,
    else per-process ones), one instrument's range; reports its own counters."""
    logging.getLogger("okx.rest.client").setLevel(logging.ERROR)
    limits = RedisRateLimits.from_url(redis_url) if redis_url else RateLimits()
    client = RestClient(rest_url, limits=limits, max_retries=8)
    inst, lo, hi, _ = job
    got: list[dict] = []
    barrier.wait(timeout=120)
    start = time.time()
    backfill(client, inst, lo, hi, got)
    out.put(
        {
            "start": start,
            "end": time.time(),
            "sent": requests_sent(),
            "limited": sample("okx_rest_rate_limited_total", endpoint=ENDPOINT),
            "ids": sorted(int(r["tradeId"]) for r in got),
        }
    )


def run_processes(
    label: str, rest_url: str, redis_url: str | None, jobs: list[tuple[str, str, str, list[dict]]]
) -> dict:
    """Backfill each job in its own spawned process, all started together."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(jobs)), ctx.Queue()
    procs = [
        ctx.Process(target=_process_backfill, args=(rest_url, redis_url, job, barrier, out))
        for job in jobs
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    by_first_id = {r["ids"][0] if r["ids"] else None: r for r in reports}
    ordered = [by_first_id.get(int(want[0]["tradeId"]), {"ids": []}) for *_, want in jobs]
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return figures(
        label,
        elapsed,
        sum(r["sent"] for r in reports),
        sum(r["limited"] for r in reports),
        [r["ids"] for r in ordered],
        jobs,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=120, help="history-trades pages per client run")
    ap.add_argument("--threads", type=int, default=2, help="instruments backfilled at once")
    ap.add_argument(
        "--processes",
        type=int,
        default=2,
        help="processes for the multi-process rows (0: skip them)",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    logging.getLogger("okx.rest.client").setLevel(logging.ERROR)  # retries are counted instead
    insts = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "DOGE-USDT")[: max(a.threads, a.processes)]
    per_thread = a.pages * 100 // a.threads
    per_process = a.pages * 100 // max(a.processes, 1)
    need = max(2 * per_thread, 2 * per_process) + 10  # two disjoint ranges: one per client
    with OkxSim(
        port=0, rate=200, seed=7, instruments=insts, strict_limits=True, bot_interval_s=0
    ) as sim:
        while min(len(truth(sim, i)) for i in insts) < need:
            time.sleep(0.5)
        truths = {inst: truth(sim, inst) for inst in insts}

        def ranges(n: int, count: int) -> tuple[list, list]:
            """For `count` instruments, two disjoint ranges of n trades each: (newest, older)."""
            newer, older = [], []
            for inst in insts[:count]:
                t = truths[inst]
                newer.append((inst, t[-n - 2]["tradeId"], t[-1]["tradeId"], t[-n - 1 : -1]))
                older.append(
                    (inst, t[-2 * n - 3]["tradeId"], t[-n - 2]["tradeId"], t[-2 * n - 2 : -n - 2])
                )
            return newer, older

        jobs_a, jobs_b = ranges(per_thread, a.threads)
        paced = run(
            "paced (okx.rest.ratelimit)",
            RestClient(sim.rest_url, limits=RateLimits(), max_retries=8),
            jobs_a,
        )
        time.sleep(LIMIT_WINDOW + 0.5)  # let okxsim's window forget the paced run
        unpaced = run(
            "unpaced + retries (baseline)",
            RestClient(sim.rest_url, limits=False, max_retries=8),
            jobs_b,
        )
        rows = [paced, unpaced]
        if a.processes:
            jobs_c, jobs_d = ranges(per_process, a.processes)
            with RedisServer() as redis_server:
                time.sleep(LIMIT_WINDOW + 0.5)
                rows.append(
                    run_processes(
                        f"{a.processes} procs, shared (Redis)",
                        sim.rest_url,
                        redis_server.url,
                        jobs_c,
                    )
                )
                time.sleep(LIMIT_WINDOW + 0.5)
                rows.append(
                    run_processes(
                        f"{a.processes} procs, per-process + retries", sim.rest_url, None, jobs_d
                    )
                )
    if a.json:
        print(json.dumps(rows))
        return
    print(
        f"history-trades backfill, limit {LIMIT_N}/{LIMIT_WINDOW:g}s, okxsim strict; "
        f"{a.threads} instruments at once in one process, then {a.processes} processes "
        f"with one instrument each"
    )
    keys = (
        "seconds",
        "requests",
        "rejected_50011",
        "accepted_per_s",
        "sustained_vs_limit",
        "trades",
        "trades_per_s",
        "trades_per_s_vs_max",
        "exact",
    )
    print(f"{'client':36}" + "".join(f"{k:>21}" for k in keys))
    for r in rows:
        print(f"{r['client']:36}" + "".join(f"{str(r[k]):>21}" for k in keys))


if __name__ == "__main__":
    main()
