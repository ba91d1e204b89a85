"""Shared pieces of the end-to-end benchmark and the soak: start the whole stack as separate
processes, read their CPU and memory from /proc, and time Redis state writes.

The stack (every part a process of its own, started as in production or as localrun/demo.py does):

    bench.sim_server (okxsim + rate control)  ->  feeder (`python -m collector`)
        ->  redis-server (broker and state)   ->  `celery -A tasks worker`
        ->  Redis state  +  MongoDB (MONGODB_URI, else localrun.mongo_standin in its own process)

Latency: the workers store Redis's own time in each state hash they write (bench/write_stamp.py);
redis-server publishes a keyspace notification for every HSET and ZADD (`notify-keyspace-events
Khz`), and the bench's probe reads the hash's exchange `ts` with that stamp and compares it with
when okxsim sent the frame (bench/sim_server.py logs it on CLOCK_MONOTONIC). See LatencyProbe.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.write_stamp import FIELD as STAMP_FIELD  # noqa: E402
from localrun.mongo_standin import CLIENT_FACTORY  # noqa: E402
from localrun.processes import stop_process as _stop_process  # noqa: E402
from localrun.redis_server import RedisServer, free_port  # noqa: E402

INSTRUMENTS = (
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
# The feeder's default public channels (core.settings.DEFAULT_PUBLIC_CHANNELS).
CHANNELS = "books,books5,trades-all,tickers,candle1m"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ----- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_KB / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """Direct children of pid (a prefork worker's pool processes)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat): other processes' load is
    this minus ours."""
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return (sum(vals[:8]) - idle) / CLK_TCK


# ----- HTTP --------------------------------------------------------------------------------------


def http_json(url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return orjson.loads(resp.read())


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s")


def metrics(url: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (enough for the feeder's counters)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def histogram_quantiles(before: dict[str, float], after: dict[str, float], name: str) -> dict:
    """p50/p99 (bucket upper bounds, ms) of a Prometheus histogram between two scrapes."""
    buckets = []
    for key, v in after.items():
        if key.startswith(name + "_bucket{") and 'le="' in key:
            le = key.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, v - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return {"n": 0}
    out: dict[str, Any] = {"n": int(total)}
    for q in (0.5, 0.99):
        for bound, cum in buckets:
            if cum >= q * total:
                out[f"p{int(q * 100)}_ms_le"] = bound * 1000
                break
    return out


# ----- processes -----------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: only the process we started."""
    _stop_process(
        proc,
        " ".join(map(str, proc.args[:3])) if isinstance(proc.args, list) else "process",
        timeout,
    )


class Sim:
    """bench.sim_server in its own process."""

    def __init__(
        self,
        rate: float,
        logdir: Path,
        trade_history: int = 2_000_000,
        tick_ms: int = 100,
        seed: int = 1,
        stagger: bool = True,
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "bench.sim_server",
            "--port",
            str(self.port),
            "--rate",
            str(rate),
            "--tick-ms",
            str(tick_ms),
            "--seed",
            str(seed),
            "--bot-interval",
            "0",
            "--trade-history",
            str(trade_history),
        ] + (["--stagger"] if stagger else [])
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=open(logdir / "okxsim.log", "ab"), stderr=subprocess.STDOUT
        )
        wait_http(self.base + "/api/v5/public/time", self.proc, "okxsim")
        self.rate = rate
        # okxsim's clock = offset + CLOCK_MONOTONIC (bench/sim_server.py)
        self.clock_offset = http_json(self.base + "/bench/clock")["offset"]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def set_rate(self, rate: float) -> None:
        http_json(self.base + "/bench/rate", {"rate": rate})
        self.rate = rate

    def now_ms(self) -> float:
        """Now on okxsim's clock, in (fractional) epoch milliseconds."""
        return (self.clock_offset + time.monotonic()) * 1000

    def stats(self) -> dict:
        return http_json(self.base + "/sim/stats")["data"][0]

    def sent_since(self, t: float) -> list:
        """[(channel, instId, ts, CLOCK_MONOTONIC s)] of tickers/books5 frames sent after t."""
        return http_json(f"{self.base}/bench/sent?since={t}", timeout=60)["sent"]

    def truth_trades(self, inst: str) -> list[dict]:
        return http_json(f"{self.base}/sim/truth/trades?instId={inst}", timeout=60)["data"]


def start_redis(logdir: Path, appendonly: bool = True) -> RedisServer:
    # Khz: keyspace events for hash and sorted-set commands, so the bench sees each state write
    # (ticker:, books5:, trades:)
    return RedisServer(
        appendonly=appendonly, workdir=str(logdir), extra_args=["--notify-keyspace-events", "Khz"]
    ).start()


def start_mongo(logdir: Path, standin: bool = False) -> tuple[str, str, subprocess.Popen | None]:
    """(uri, label, process). A real MongoDB when MONGODB_URI is set (unless `standin`), else
    the stand-in in its own process."""
    uri = os.environ.get("MONGODB_URI")
    if uri and not standin:
        return uri, "real MongoDB (MONGODB_URI)", None
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "localrun.mongo_standin", "--port", str(port)],
        cwd=ROOT,
        stdout=open(logdir / "mongo_standin.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the MongoDB stand-in exited at start")
        with contextlib.suppress(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        time.sleep(0.1)
    return (
        f"mongostandin://127.0.0.1:{port}",
        "STAND-IN: mongomock behind a socket (localrun/mongo_standin.py), NOT MongoDB",
        proc,
    )


def base_env(
    redis_url: str, mongo_uri: str, sim: Sim, instruments: str, channels: str, db_name: str
) -> dict[str, str]:
    """The environment localrun/demo.py gives the feeder and the worker (public channels only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_API_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "MONGODB_URI": mongo_uri,
            "MONGO_CLIENT_FACTORY": CLIENT_FACTORY,  # the stand-in for mongostandin://, else pymongo
            "MONGODB_DB": db_name,
            "OKX_WS_URL": sim.ws_url,
            "OKX_REST_URL": sim.base,
            "OKX_INSTRUMENTS": instruments,
            "OKX_CHANNELS": channels,
            "REMAP_SIGTERM": "SIGQUIT",
        }
    )
    return env


def start_worker(
    env: dict[str, str], logdir: Path, app: str, queues: str, pool: str, concurrency: int, name: str
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-l",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"{name}@%h",
    ]
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=open(logdir / f"{name}.log", "ab"), stderr=subprocess.STDOUT
    )


def start_feeder(env: dict[str, str], logdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(env, FEEDER_HEALTH_PORT=str(port), FEEDER_ID="bench-feeder")
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "--log-level", "WARNING"],
        env=env,
        cwd=ROOT,
        stdout=open(logdir / "feeder.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc, "feeder")
    return proc, url


# ----- latency: okxsim ts -> Redis state write ------------------------------------------------------


@dataclass
class LatencyProbe:
    """Records every write of a ticker:* and books5:* key, three ways:

      write   from the moment okxsim wrote the frame to the socket (bench/sim_server.py logs the
              CLOCK_MONOTONIC time of every tickers and books5 frame it sends) to the moment
              Redis wrote the state: the workers run bench.write_stamp, whose versioned write
              also stores Redis's `TIME` in the hash (`_bench_written_us`). This is the figure.
      seen    from the same send to the moment the write's keyspace notification reached this
              probe (what a subscriber sees: the write plus one delivery and wake-up).
      ts      from the exchange `ts` in the stored hash to that moment, on okxsim's clock. okxsim
              stamps `ts` when a tick starts, floored to the millisecond, so this figure is about
              0.5 ms higher on average; it is kept because it is what a user can compute.
    Redis's stamp is the wall clock and okxsim's send times are CLOCK_MONOTONIC; both are
    system-wide clocks, so one offset (the tightest of several readings) converts one into the
    other. One HMGET reads `ts` and the stamp together, so a pair always belongs to the same write
    (when a newer write came first, the older one is simply not sampled).
    bbo-tbt writes to books5:* carry the time of an event inside the tick, so they are left out.
    """

    redis_url: str
    sim: Sim
    # (seen, key, ts, ts -> seen ms, written (monotonic) or None when the hash has no stamp)
    samples: list[tuple[float, str, int, float, float | None]] = field(default_factory=list)
    # (seen, "trades:<instId>", tradeId of the newest trade in the set when the ZADD was seen)
    trade_samples: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LatencyProbe:
        import redis

        from core import keys

        self._offset = wall_minus_monotonic()
        self._sub = redis.Redis.from_url(self.redis_url)
        self._get = redis.Redis.from_url(self.redis_url)
        self._ps = self._sub.pubsub(ignore_subscribe_messages=True)
        self._ps.psubscribe(
            *(
                f"__keyspace@0__:{p}"
                for p in (keys.TICKER_PATTERN, keys.BOOKS5_PATTERN, keys.TRADES_PATTERN)
            )
        )
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from core.keys import TRADES_PREFIX

        trades_prefix = TRADES_PREFIX.encode()
        prefix = len("__keyspace@0__:")
        offset = self._offset
        while not self._stop.is_set():
            msg = self._ps.get_message(timeout=0.2)
            if msg is None:
                continue
            t = time.monotonic()  # first: when the write became visible
            now = self.sim.now_ms()
            key = msg["channel"][prefix:]
            if key.startswith(trades_prefix):
                if msg["data"] == b"zadd":
                    newest = self._get.zrange(key, -1, -1)
                    if newest:
                        self.trade_samples.append(
                            (t, key.decode(), int(orjson.loads(newest[0])["tradeId"]))
                        )
                continue
            ts, channel, stamp = self._get.hmget(key, "ts", "channel", STAMP_FIELD)
            if ts is None or (channel is not None and channel == b"bbo-tbt"):
                continue
            written = int(stamp) / 1e6 - offset if stamp is not None else None
            self.samples.append((t, key.decode(), int(ts), now - int(ts), written))

    def writes(self, t0: float, t1: float) -> list[tuple[float, str, int]]:
        """(written, key, ts) of the stamped writes made in [t0, t1)."""
        return [
            (w, key, ts) for _t, key, ts, _lat, w in self.samples if w is not None and t0 <= w < t1
        ]

    def window(self, t0: float, t1: float) -> dict:
        """Latency of the writes made in [t0, t1): {"write": ..., "seen": ..., "from_ts": ...}."""
        rows = [s for s in self.samples if t0 <= s[0] < t1]
        return {
            "write": since_send(self.sim, t0, self.writes(t0, t1)),
            "seen": since_send(self.sim, t0, [(t, key, ts) for t, key, ts, *_ in rows]),
            "from_ts": latency_summary([s[3] for s in rows]),
            "trades_seen": since_send(
                self.sim, t0, [s for s in self.trade_samples if t0 <= s[0] < t1]
            ),
        }

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self._ps.close()
            self._sub.close()
            self._get.close()


def wall_minus_monotonic() -> float:
    """time.time() - time.monotonic(), from the tightest of 20 paired readings."""
    best = None
    for _ in range(20):
        a = time.monotonic()
        w = time.time()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) / 2)
    return best[1]


@dataclass
class StageMonitor:
    """Where a state write's latency goes, from Redis's MONITOR stream (`bench.e2e --stages`).

    MONITOR stamps every command with the server's clock as it runs (commands inside Lua scripts
    included), so for each ticker:* / books5:* write it gives, on Redis's clock:
        feeder   okxsim's send -> the LPUSH of the task that carried it (socket read, parse,
                 outbox, publisher wake-up, message build, the LPUSH's way to Redis)
        pickup   LPUSH -> the worker records the message in kombu's `unacked_index` (Redis wakes
                 the worker's BRPOP, kombu reads and parses the message)
        task     -> the state write (Celery's dispatch, validation, the write's pipeline)
    A write belongs to the task whose message the worker took last before it: exact for one solo
    worker, which is what bench.e2e runs.

    MONITOR is not free: redis-server formats every command for it, argument by argument, on its
    one thread, and task messages are several KB. It inflates what it times by about 1 ms at
    2,000 msg/s (see bench/write_stamp.py), so read the stages as a split, not as absolute figures.
    """

    redis_url: str
    sim: Sim
    writes: list[tuple[float, str, int]] = field(default_factory=list)  # (mono, key, ts)
    pushes: dict[str, float] = field(default_factory=dict)  # delivery tag -> mono
    fetches: list[tuple[float, str]] = field(default_factory=list)  # (mono, delivery tag)

    def start(self) -> StageMonitor:
        import redis

        self._offset = wall_minus_monotonic()
        self._client = redis.Redis.from_url(self.redis_url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-monitor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        offset = self._offset
        try:
            for cmd in self._monitor.listen():
                if self._stop.is_set():
                    return
                text = cmd.get("command", "")
                t = cmd["time"] - offset
                if text.startswith("LPUSH ingest "):
                    for tag in _DELIVERY_TAG.findall(text):
                        self.pushes[tag] = t
                elif text.startswith("ZADD unacked_index "):
                    self.fetches.append((t, text.rsplit(" ", 1)[1]))
                elif text.startswith(("HSET ticker:", "HSET books5:")):
                    parts = text.split(" ")
                    fields = dict(zip(parts[2::2], parts[3::2]))
                    if fields.get("channel") != "bbo-tbt" and fields.get("ts", "").isdigit():
                        self.writes.append((t, parts[1], int(fields["ts"])))
        except Exception:  # noqa: BLE001 - the connection closes at stop()
            return

    def stages(self, t0: float, t1: float) -> dict:
        """p50 / p99 (ms) of each stage for the writes made in [t0, t1)."""
        sent = send_times(self.sim, t0)
        fetch_times = [f[0] for f in self.fetches]
        rows: dict[str, list[float]] = {"feeder": [], "pickup": [], "task": []}
        for t, key, ts in self.writes:
            t_sent = sent.get(_send_key(key, ts))
            i = bisect.bisect_right(fetch_times, t) - 1
            if not t0 <= t < t1 or t_sent is None or i < 0:
                continue
            t_fetch, tag = self.fetches[i]
            t_push = self.pushes.get(tag)
            if t_push is None or not t_sent <= t_push <= t_fetch:
                continue
            rows["feeder"].append((t_push - t_sent) * 1000)
            rows["pickup"].append((t_fetch - t_push) * 1000)
            rows["task"].append((t - t_fetch) * 1000)
        out: dict = {}
        for name, values in rows.items():
            summary = latency_summary(values)
            out[name] = {k: summary[k] for k in ("n", "p50_ms", "p99_ms") if k in summary}
        out["total"] = since_send(self.sim, t0, [w for w in self.writes if t0 <= w[0] < t1])
        return out

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._client.connection_pool.disconnect()  # ends listen() in the thread
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self._monitor.__exit__(None, None, None)
            self._client.close()


_DELIVERY_TAG = re.compile(r'"delivery_tag":"([^"]+)"')


def send_times(sim: Sim, t0: float) -> dict[tuple, float]:
    """(state key prefix, instId, ts or tradeId) -> when okxsim sent that tickers, books5 or
    trades frame."""
    return {
        ("ticker" if channel == "tickers" else channel, inst, ts): t
        for channel, inst, ts, t in sim.sent_since(t0 - 5.0)
    }


def _send_key(key: str, ts: int) -> tuple:
    kind, _, inst = key.partition(":")
    return kind, inst, ts


def since_send(sim: Sim, t0: float, rows: list[tuple[float, str, int]]) -> dict:
    """Latency summary of state writes [(CLOCK_MONOTONIC s, "ticker:<instId>" or
    "books5:<instId>", ts)], each measured from when okxsim sent the frame with that ts."""
    sent = send_times(sim, t0)
    lat = []
    for t, key, ts in rows:
        t_sent = sent.get(_send_key(key, ts))
        if t_sent is not None:
            lat.append((t - t_sent) * 1000)
    out = latency_summary(lat)
    out["unmatched"] = len(rows) - len(lat)
    return out


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    pct = lambda q: round(v[min(len(v) - 1, int(q * len(v)))], 2)  # noqa: E731
    return {
        "n": len(v),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(v[-1], 2),
    }


# ----- memory of every process ------------------------------------------------------------------


def process_table(named: dict[str, int | None]) -> dict[str, int]:
    """{name: pid} for the given processes plus each one's children (prefork pool, ...)."""
    out: dict[str, int] = {}
    for name, pid in named.items():
        if not pid:
            continue
        out[name] = pid
        for i, child in enumerate(children(pid)):
            out[f"{name}.child{i + 1}"] = child
    return out


def memory(table: dict[str, int]) -> dict[str, float]:
    return {name: round(rss_mb(pid), 1) for name, pid in table.items()}
