"""Export bench: one hour and ten hours of okxsim-shaped trades (10 trades/s on BTC-USDT, the
`trades` channel's records with okxsim's BTC-USDT precision) exported to Parquet and CSV by the
real command (`python -m tasks.export`, a process of its own, pymongo over the wire).

For each (range, format) it reports:

  rows/s         rows written / the export's own wall time (interpreter start excluded)
  peak RSS       the export process's VmHWM (/proc/self/status), what the machine sees
  Python peak    tracemalloc's peak during the export, in a second run of the same export
                 (tracemalloc slows Python, so its run is not the timed one)
  Arrow peak     pyarrow's memory pool high-water mark (Arrow buffers are not Python objects)
  baseline RSS   the same process after only the warm-up: every child first exports an empty
                 range (imports, settings, logging, a client), so the figures above are the
                 rows' own cost; the baseline is what the interpreter and libraries cost

Flat memory means peak(10 h) / peak(1 h) ~ 1 while the rows grow 10x. The MongoDB is nx-27017
(localrun/mongo_server.py), or MONGODB_URI when set (a real server: the figures then include
its speed, not nx-27017's).

    .venv/bin/python -m bench.export [--rate 10] [--hours 1 10] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrun.mongo_server import MongoServer  # noqa: E402
from tasks.documents import mongo_doc  # noqa: E402

INST = "BTC-USDT"
T0 = 1_763_000_000_000
HOUR_MS = 3_600_000
INSERT_BATCH = 5_000


def okxsim_trades(n: int, rate: float, seed: int = 7):
    """`n` trades at `rate`/s in the shape okxsim's `trades` channel sends (BTC-USDT: px 1 dp,
    sz 8 dp, ids and seqIds increasing) as the workers store them."""
    rng = random.Random(seed)
    px = 912_345  # tenths of a USDT
    trade_id = 400_000_000
    seq = 1_000_000
    step_ms = 1000 / rate
    for i in range(n):
        px = max(1, px + rng.choice((-3, -1, 0, 0, 1, 3)))
        trade_id += rng.randint(1, 3)
        seq += rng.randint(1, 40)
        rec = {
            "instId": INST,
            "tradeId": str(trade_id),
            "px": f"{px // 10}.{px % 10}",
            "sz": f"{rng.randint(1, 5_000_000) / 1e8:.8f}",
            "side": rng.choice(("buy", "sell")),
            "ts": str(T0 + int(i * step_ms)),
            "count": str(rng.randint(1, 3)),
            "source": "0",
            "seqId": seq,
            "channel": "trades",
        }
        yield mongo_doc("trades", rec, validated=i % 5 != 0)


def fill(uri: str, db_name: str, n: int, rate: float) -> float:
    from pymongo import MongoClient

    from tasks.writers.indexes import indexes

    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000)
    coll = client[db_name]["trades"]
    coll.drop()
    coll.create_indexes(indexes()["trades"])
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for doc in okxsim_trades(n, rate):
        batch.append(doc)
        if len(batch) >= INSERT_BATCH:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)
    took = time.perf_counter() - started
    assert coll.count_documents({}) == n
    client.close()
    return took


CHILD = r"""
import json, os, sys, time, tracemalloc
import pyarrow as pa
trace, baseline, argv = sys.argv[1] == "1", sys.argv[2] == "1", sys.argv[3:]
from tasks.export import cli
# warm-up: the same command on an empty range (imports, settings, logging, a client): what is
# left after it is the cost of the rows alone
empty = list(argv)
empty[empty.index("--end") + 1] = str(int(empty[empty.index("--start") + 1]) + 1)
empty[empty.index("--out") + 1] = argv[argv.index("--out") + 1] + ".warm"
assert cli.main(empty) == 0
os.unlink(empty[empty.index("--out") + 1])
def hwm_kb():
    # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's pages inherited
    # at fork, which Linux keeps counting across exec)
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
if baseline:
    print(json.dumps({"code": 0, "seconds": 0, "py_peak": None, "arrow_peak": 0, "hwm_kb": hwm_kb()}))
    sys.exit(0)
if trace:
    tracemalloc.start()
arrow_before = pa.default_memory_pool().max_memory()
started = time.perf_counter()
code = cli.main(argv)
took = time.perf_counter() - started
print(json.dumps({"code": code, "seconds": took,
                  "py_peak": tracemalloc.get_traced_memory()[1] if trace else None,
                  "arrow_peak": pa.default_memory_pool().max_memory(), "hwm_kb": hwm_kb()}))
"""


def find_rate(uri: str, db_name: str, hours: float) -> int:
    """Rows/s of a plain pymongo find of the same range, same sort and batch size, documents
    only counted: what the server and pymongo can give, the ceiling of any export here."""
    from pymongo import MongoClient

    from tasks.export.query import SORT, make_request, mongo_filter
    from tasks.export.stream import BATCH_DOCS

    req = make_request("trades", INST, T0, T0 + int(hours * HOUR_MS))
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000)
    started = time.perf_counter()
    n = sum(1 for _ in client[db_name]["trades"].find(mongo_filter(req), sort=SORT,
                                                        batch_size=BATCH_DOCS))  # fmt: skip
    took = time.perf_counter() - started
    client.close()
    return round(n / took)


def own_work_rate(n: int, rate: float, fmt: str, out_dir: Path) -> int:
    """Rows/s of the export's own work (tie order, columns, Arrow, the sink) on documents
    already in memory, as pymongo hands them (naive dt): no server in the way."""
    from tasks.export.columns import arrow_schema, to_batch
    from tasks.export.sinks import open_sink
    from tasks.export.stream import BATCH_DOCS, chunks, in_time_order

    docs = list(okxsim_trades(n, rate))
    for d in docs:
        d["dt"] = d["dt"].replace(tzinfo=None)
    out = out_dir / f"own.{fmt}"
    sink = open_sink(fmt, str(out), arrow_schema("trades"))
    started = time.perf_counter()
    for chunk in chunks(in_time_order("trades", docs), BATCH_DOCS):
        sink.write(to_batch("trades", chunk)[0])
    sink.close()
    took = time.perf_counter() - started
    out.unlink()
    return round(n / took)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=10.0, help="trades per second (default 10)")
    ap.add_argument("--hours", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--keep", action="store_true", help="keep the exported files")
    args = ap.parse_args()

    # SIGTERM ends the bench through its `finally` (the server stopped and removed), not around it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    external = os.environ.get("MONGODB_URI", "")
    server = None if external else MongoServer().start()
    uri = external or server.uri  # type: ignore[union-attr]
    db_name = f"bench_export_{os.getpid()}"
    out_dir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DB": db_name, "PYTHONPATH": str(ROOT)}
    env.pop("MONGO_CLIENT_FACTORY", None)
    rows_out: list[dict[str, Any]] = []
    try:
        for hours in args.hours:
            n = int(hours * 3600 * args.rate)
            took = fill(uri, db_name, n, args.rate)
            print(f"{hours:g} h: {n} trades stored in {took:.1f} s", file=sys.stderr)
            # warm-up: the first reads of a range after the load are slower (nx-27017's SQLite
            # cache and WAL); without it the first timed export pays for every later one
            find_rate(uri, db_name, hours)
            read_rate = find_rate(uri, db_name, hours)
            own_rate = {
                fmt: own_work_rate(n, args.rate, fmt, out_dir) for fmt in ("parquet", "csv")
            }
            for fmt in ("parquet", "csv"):
                out = out_dir / f"trades-{hours:g}h.{fmt}"
                argv = ["trades", INST, "--start", str(T0),
                        "--end", str(T0 + int(hours * HOUR_MS)),
                        "--format", fmt, "--out", str(out), "--quiet"]  # fmt: skip
                timed, rss = measured(argv, env, trace=False, baseline=False)
                file_mb = round(out.stat().st_size / 2**20, 2)
                traced, _ = measured(argv, env, trace=True, baseline=False)
                _, base_rss = measured(argv, env, trace=False, baseline=True)
                row = {
                    "hours": hours,
                    "format": fmt,
                    "rows": n,
                    "rows_per_s": round(n / timed["seconds"]),
                    "seconds": round(timed["seconds"], 2),
                    "peak_rss_mb": round(rss / 1024, 1),
                    "baseline_rss_mb": round(base_rss / 1024, 1),
                    "py_peak_mb": round(traced["py_peak"] / 2**20, 2),
                    "arrow_peak_mb": round(timed["arrow_peak"] / 2**20, 2),
                    "file_mb": file_mb,
                    "find_rows_per_s": read_rate,
                    "own_rows_per_s": own_rate[fmt],
                }
                rows_out.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
            server.remove()
        if not args.keep:
            for p in out_dir.iterdir():
                p.unlink()
            out_dir.rmdir()
    report(rows_out, args.hours)
    return 0


def measured(argv: list[str], env: dict[str, str], *, trace: bool, baseline: bool):
    """(the child's own figures, its peak RSS in KiB from its VmHWM)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "1" if trace else "0", "1" if baseline else "0", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    if proc.returncode != 0 or result.get("code") != 0:
        raise SystemExit(f"export failed ({proc.returncode}): {err.strip()[-2000:]}")
    return result, result["hwm_kb"]


def report(rows: list[dict[str, Any]], hours: list[float]) -> None:
    print("| range | format | rows | rows/s | find alone rows/s | own work rows/s | peak RSS MB "
          "| baseline RSS MB | Python peak MB | Arrow peak MB | file MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['hours']:g} h | {r['format']} | {r['rows']} | {r['rows_per_s']} | "
              f"{r['find_rows_per_s']} | {r['own_rows_per_s']} | "
              f"{r['peak_rss_mb']} | {r['baseline_rss_mb']} | {r['py_peak_mb']} | "
              f"{r['arrow_peak_mb']} | {r['file_mb']} |")  # fmt: skip
    if len(hours) >= 2:
        lo, hi = min(hours), max(hours)
        for fmt in ("parquet", "csv"):
            a = next(r for r in rows if r["hours"] == lo and r["format"] == fmt)
            b = next(r for r in rows if r["hours"] == hi and r["format"] == fmt)
            print(f"{fmt}: {hi:g} h / {lo:g} h: rows x{b['rows'] / a['rows']:.0f}, "
                  f"peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}, "
                  f"above baseline x{(b['peak_rss_mb'] - b['baseline_rss_mb']) / max(0.1, a['peak_rss_mb'] - a['baseline_rss_mb']):.2f}, "
                  f"Python peak x{b['py_peak_mb'] / a['py_peak_mb']:.2f}, "
                  f"Arrow peak x{b['arrow_peak_mb'] / max(0.01, a['arrow_peak_mb']):.2f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
