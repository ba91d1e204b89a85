"""The whole collector as separate processes, for the fault matrix (tests/test_fault_matrix.py).

okxsim runs in the test process (so faults and ground truth are a call away); the broker and
state live on a private redis-server with AOF; MongoDB is a wire-protocol server
(localrun/mongo_server.py, nx-27017) that the worker reaches with pymongo through a fault proxy
(localrun/mongo_faults.py: nothing listening, hung, slow, refusing), and that can be wiped (back
empty on the same port). The test reads MongoDB directly, past the proxy.
The feeder (`python -m collector`) and the worker (`celery -A tasks worker`) are real child
processes in their own process groups, so a test can SIGKILL or SIGTERM them as an OOM killer
or Heroku would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import redis
from pymongo import MongoClient

from core import keys
from localrun.mongo_faults import MongoFaultProxy
from localrun.mongo_server import MongoServer
from localrun.redis_server import RedisServer, free_port
from okxsim.config import SimConfig
from okxsim.server import OkxSim
from tests.feeder_fixtures import gaps
from tests.polling import wait_for
from tests.workers_fixtures import children, kill_quietly

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
INSTS = ("BTC-USDT", "ETH-USDT")
CHANNELS = "books,trades-all,orders"
# A connection up this long counts as healthy again (FEEDER_HEALTHY_AFTER; production: 5 s, our
# own policy, not an OKX rule), so faults a second or two apart do not grow the backoff.
HEALTHY_AFTER_S = 1.0


class FaultStack:
    """One collector: okxsim, redis-server (AOF), MongoDB (nx-27017 behind a fault proxy), a
    feeder and a worker."""

    def __init__(
        self,
        workdir: Path,
        insts: tuple[str, ...] = INSTS,
        channels: str = CHANNELS,
        sim: dict[str, Any] | None = None,
        worker_processes: int = 1,
    ):
        self.workdir = workdir
        # tests/test_hostile.py: nine instruments, no orders, OKX's own 100 ms cadence, 2 children
        self.insts, self.channels, self.worker_processes = insts, channels, worker_processes
        # checksum "crc" so a corrupt checksum is detectable; the bot trades the account so
        # the private orders channel carries events
        cfg: dict[str, Any] = {
            "checksum": "crc",
            "tick_ms": 50,
            "bot_interval_s": 0.5,
            **(sim or {}),
        }
        self.redis_dir = workdir / "redis"
        self.redis_dir.mkdir()
        self.redis = RedisServer(appendonly=True, workdir=str(self.redis_dir)).start()
        self.broker = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        self.mongo_server = MongoServer(workdir=str(workdir / "mongo")).start()
        self.mongo = MongoFaultProxy(self.mongo_server.port).start()  # what the worker reaches
        self.mongo_db = "okex"
        self.mongo_reader = MongoClient(self.mongo_server.uri, serverSelectionTimeoutMS=10000)
        # orders_since_ms: orders created from then on are compared (see comparison)
        self.base: dict[str, int] = {}
        # okxsim last, so the time its bot trades before the feeder first subscribes is short
        self.sim = OkxSim(SimConfig(port=0, instruments=insts, **cfg)).start()
        self.pause_file = workdir / "pause"
        self.feeder: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._logs = 0
        self.last_comparison: dict = {}  # what the last exact() saw (reported as is)

    # ----- processes -------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        self._logs += 1
        log = open(self.workdir / f"{self._logs:02d}-{name}.log", "w")
        full = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OKX_", "FEEDER_", "MONGO"))  # MONGODB_*, MONGO_CLIENT_FACTORY
        }
        full.update(PYTHONPATH=str(ROOT), REDIS_URL=self.redis.url, **env)
        return subprocess.Popen(
            argv, cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def credentials(self) -> dict[str, str]:
        cfg = self.sim.config
        return {
            "OKX_API_KEY": cfg.api_key,
            "OKX_API_SECRET": cfg.api_secret,
            "OKX_API_PASSPHRASE": cfg.passphrase,
        }

    def feeder_env(self, feeder_id: str, health_port: int, **overrides: str) -> dict[str, str]:
        """A feeder's environment against this stack's okxsim; `overrides` add or replace."""
        # Keepalive: ping after 5 s of silence and a 2 s pong timeout; OKX allows any N < 30 s.
        return {
            **self.credentials(),
            "OKX_WS_URL": self.sim.ws_url,
            "OKX_REST_URL": self.sim.rest_url,
            "OKX_INSTRUMENTS": ",".join(self.insts),
            "OKX_CHANNELS": self.channels,
            "OKX_PING_AFTER": "5",
            "OKX_PONG_TIMEOUT": "2",
            "FEEDER_ID": feeder_id,
            "FEEDER_HEALTHY_AFTER": str(HEALTHY_AFTER_S),
            "FEEDER_HEALTH_PORT": str(health_port),
            **overrides,
        }

    def start_feeder(self) -> None:
        self.health_port = free_port()
        self.feeder = self._spawn(
            "feeder",
            [sys.executable, "-m", "collector"],
            self.feeder_env("fault-matrix", self.health_port),
        )

    def start_worker(self) -> None:
        self.worker = self._spawn(
            "worker",
            [
                CELERY,
                "-A",
                "tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.worker_processes),
                "-Q",
                "ingest,history,backfill",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
                "-n",
                f"fm{self._logs}@%h",
            ],
            {
                "REMAP_SIGTERM": "SIGQUIT",
                "CELERY_SOFT_SHUTDOWN_TIMEOUT": "2",
                "STATE_REDIS_URL": self.redis.url.replace("/0", "/1"),
                "MONGODB_URI": self.mongo.uri,
                "MONGODB_DB": self.mongo_db,
                "MONGODB_TIMEOUT_MS": "1000",
                "OKX_REST_URL": self.sim.rest_url,
                **self.credentials(),
                # okxsim's bot trades spot and cross margin: orders backfill must page both types
                "BACKFILL_INST_TYPES": "SPOT,MARGIN",
                "BACKFILL_RETRY_S": "1",
                "BACKFILL_MAX_ATTEMPTS": "30",
                "BOOKS_RETENTION_S": "0",
                # Storage retries spaced to outlast a 60 s MongoDB outage (0.5 s doubling to 4 s).
                "INGEST_RETRY_BASE_S": "0.5",
                "INGEST_RETRY_CAP_S": "4",
                "INGEST_MAX_RETRIES": "100",
                # A whole-worker kill leaves tasks in `unacked`; restore them after 10 s, not 1 h.
                "BROKER_VISIBILITY_TIMEOUT": "10",
                "BROKER_RESTORE_INTERVAL": "1",
                "BROKER_RESTORE_THROTTLE": "1",
                "OKX_TEST_PAUSE_AFTER": "1",
                "OKX_TEST_PAUSE_FILE": str(self.pause_file),
            },
        )

    def ensure_running(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()
        if self.feeder is None or self.feeder.poll() is not None:
            self.start_feeder()
        wait_for(self.feeder_live, 30, interval=0.2, what="feeder live\n" + self.logs())
        if "orders_since_ms" not in self.base:
            self.rebase()  # the collector's first moment live: nothing before it is owed

    def feeder_health(self) -> dict | None:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 while degraded still carries the body
            return orjson.loads(exc.read())
        except OSError:
            return None

    def reconnects(self) -> int:
        h = self.feeder_health() or {}
        return sum(c.get("reconnects", 0) for c in h.get("connections") or [])

    def feeder_live(self) -> bool:
        h = self.feeder_health()
        conns = (h or {}).get("connections") or []
        return bool(conns) and all(c.get("state") == "live" for c in conns)

    def pool_child(self) -> int:
        kids = wait_for(lambda: children(self.worker.pid), 20, what="worker pool child")
        return kids[0]

    def terminate(
        self, proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30
    ) -> float:
        """Signal the process group; return how long it took to exit."""
        if proc is None or proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        kill_quietly(-proc.pid, sig)
        proc.wait(timeout)
        return time.monotonic() - t0

    def restart_redis(self, down_s: float) -> None:
        port = self.redis.port
        self.redis.stop()  # SIGTERM: redis-server flushes its AOF and exits
        time.sleep(down_s)  # the outage itself (a duration, not a wait for a state)
        self.redis = RedisServer(port=port, appendonly=True, workdir=str(self.redis_dir)).start()

    def mongo_fault(self, mode: str, seconds: float, **options: Any) -> None:
        """MongoDB as the worker sees it is `mode` (localrun/mongo_faults.py) for `seconds`."""
        self.mongo.set_mode(mode, **options)
        try:
            time.sleep(seconds)  # the outage itself (a duration, not a wait for a state)
        finally:
            self.mongo.set_mode("pass")

    def wipe_mongo(self) -> None:
        """MongoDB restarts with its data lost, on the same port; the comparison starts anew."""
        self.mongo_server.wipe()
        self.rebase()

    def rebase(self) -> None:
        """Compare the final states of orders created from now on: at the feeder's first start
        (an order okxsim's bot completed before the collector ever ran is nobody's gap), and
        after a wipe (older orders' final states were in the lost data). Trades compare from
        the first one stored."""
        self.base = {"orders_since_ms": self.sim.call(lambda ex: ex.clock.now_ms())}

    def stop(self) -> None:
        for proc in (self.feeder, self.worker):
            if proc is not None and proc.poll() is None:
                kill_quietly(-proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.mongo.stop()
        self.mongo_reader.close()
        self.mongo_server.stop()
        self.redis.stop()
        self.sim.stop()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(self.workdir.glob("*.log"))
        )

    # ----- okxsim ------------------------------------------------------------------------------------

    def fault(self, **body: Any) -> dict:
        req = urllib.request.Request(
            self.sim.rest_url + "/sim/faults", data=orjson.dumps(body), method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return orjson.loads(resp.read())["data"][0]

    def get(self, path: str) -> list[dict]:
        with urllib.request.urlopen(self.sim.rest_url + path, timeout=10) as r:
            return orjson.loads(r.read())["data"]

    def truth_ids(self, inst: str) -> list[int]:
        return [int(t["tradeId"]) for t in self.get(f"/sim/truth/trades?instId={inst}")]

    def mark(self) -> dict:
        """Where the exchange is now: newest trade id per instrument and the simulated time."""
        marks: dict = {inst: max(self.truth_ids(inst), default=0) for inst in self.insts}
        marks["now_ms"] = self.sim.call(lambda ex: ex.clock.now_ms())
        return marks

    # ----- stores -----------------------------------------------------------------------------------

    def _find(self, coll: str, query: dict, fields: dict) -> list[dict]:
        return list(self.mongo_reader[self.mongo_db][coll].find(query, fields))

    def stored_ids(self, inst: str) -> list[int]:
        return [int(d["tradeId"]) for d in self._find("trades", {"instId": inst}, {"tradeId": 1})]

    def settled(self) -> bool:
        """Nothing queued or in flight on the broker, and no gap left open."""
        try:
            b = self.broker
            return (
                b.llen("ingest") == 0
                and b.llen("backfill") == 0
                and b.hlen("unacked") == 0
                and b.zcard("gaps:open") == 0
            )
        except redis.RedisError:
            return False

    def comparison(self, mark: dict) -> dict[str, dict]:
        """Stores against okxsim's truth, from the first record stored up to `mark` (where the
        exchange was when the fault ended). Trades: MongoDB per instrument. Orders: every final
        order state in MongoDB, nothing the exchange never had, and exactly one Redis order<N>
        per stored event (one numbered twice, or stored with no number, is `duplicated`)."""
        out = {}
        for inst in self.insts:
            stored = self.stored_ids(inst)
            lo = min(stored, default=0)
            window = [i for i in stored if i <= mark[inst]]
            truth = {i for i in self.truth_ids(inst) if lo <= i <= mark[inst]}
            out[f"trades {inst}"] = {
                "missing": len(truth - set(window)),
                "duplicated": len(window) - len(set(window)),
                "extra": len(set(window) - truth),
                "window": len(truth),
            }
        if "orders" not in self.channels.split(","):
            return out
        docs = self._find("order", {}, {"ordId": 1, "uTime": 1, "state": 1, "cTime": 1})
        stored_events = {(d["ordId"], d["uTime"], d["state"]) for d in docs}
        # not the oldest stored cTime: a resting order from before the collector ran, filled
        # later, would pull in orders that were complete before it ever subscribed
        first = self.base.get("orders_since_ms") or min((int(d["cTime"]) for d in docs), default=0)
        events = {(o["ordId"], o["uTime"], o["state"]) for o in self.get("/sim/truth/orders")}
        finals = {
            (o["ordId"], o["uTime"], o["state"])
            for o in self.get("/sim/truth/orders?final=1")
            if first <= int(o["cTime"]) and int(o["uTime"]) <= mark["now_ms"]
        }
        numbered = self.numbered_events()
        out["orders"] = {
            "missing": len(finals - stored_events),
            # an event with two order<N> (a redelivery numbered twice), or stored with none
            "duplicated": sum(n - 1 for n in numbered.values())
            + len(stored_events - set(numbered)),
            "extra": len(stored_events - events),
            "window": len(finals),
        }
        return out

    def numbered_events(self) -> Counter:
        """How many order<N> numbers each order event got (state Redis, db 1). Read from the
        hashes themselves, so a wipe of MongoDB changes nothing here."""
        state = redis.Redis.from_url(
            self.redis.url.replace("/0", "/1"), socket_timeout=5, decode_responses=True
        )
        try:
            top = int(state.get(keys.ORDER_COUNTER) or 0)
            pipe = state.pipeline(transaction=False)
            for n in range(1, top + 1):
                pipe.hmget(keys.order_key(n), "ordId", "uTime", "state")
            return Counter(tuple(v) for v in pipe.execute() if v[0] is not None)
        finally:
            state.close()

    def exact(self, mark: dict) -> bool:
        """Settled, and every comparison clean: nothing missing, duplicated or invented."""
        try:
            # trades flow every tick, so an empty trades window means nothing was compared;
            # orders complete every few seconds, so early on there may be no final state yet
            if not self.settled():
                return False
            self.last_comparison = self.comparison(mark)
            return all(
                (c["window"] > 0 or name == "orders")
                and c["missing"] == c["duplicated"] == c["extra"] == 0
                for name, c in self.last_comparison.items()
            )
        except redis.RedisError:
            return False

    def gap_ledger(self) -> list[dict]:
        return gaps(self.broker)
