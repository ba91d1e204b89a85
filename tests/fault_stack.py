"""The whole collector as separate processes, for the fault matrix (tests/test_fault_matrix.py).

okxsim runs in the test process (so faults and ground truth are a call away); the broker and
state live on a private redis-server with AOF; MongoDB is the stand-in, served from the test
process so the test reads exactly what the workers wrote, and restartable on the same port to
make a real outage (its connections are closed, the data survive, as a real mongod's would).
The feeder (`python -m collector`) and the worker (`celery -A tasks worker`) are real child
processes in their own process groups, so a test can SIGKILL or SIGTERM them as an OOM killer
or Heroku would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import redis

from core import keys
from localrun.mongo_standin import CLIENT_FACTORY, MongoStandin
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


class RestartableStandin(MongoStandin):
    """The MongoDB stand-in, able to go away (listener and every open connection closed, so
    clients see the socket drop) and come back on the same port with the same data."""

    def __init__(self, port: int = 0, client: Any = None):
        super().__init__(port=port)
        if client is not None:
            self.client = client
        self._conns: list[Any] = []

    def _serve(self, conn: Any) -> None:
        self._conns.append(conn)
        super()._serve(conn)

    def stop(self) -> None:
        super().stop()
        for conn in self._conns:
            # shut the socket down under its serving thread (which then closes it itself);
            # closing the descriptor here could close a reused fd number instead
            try:
                with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its thread


class FaultStack:
    """One collector: okxsim, redis-server (AOF), MongoDB stand-in, a feeder and a worker."""

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
        self.sim = OkxSim(SimConfig(port=0, instruments=insts, **cfg)).start()
        self.redis_dir = workdir / "redis"
        self.redis_dir.mkdir()
        self.redis = RedisServer(appendonly=True, workdir=str(self.redis_dir)).start()
        self.broker = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        self.mongo = RestartableStandin().start()
        self.pause_file = workdir / "pause"
        self.feeder: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._logs = 0
        self.last_comparison: dict = {}  # what the last exact() saw (reported as is)

    # ----- processes -------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        self._logs += 1
        log = open(self.workdir / f"{self._logs:02d}-{name}.log", "w")
        full = {k: v for k, v in os.environ.items() if not k.startswith(("OKX_", "FEEDER_"))}
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

    def start_feeder(self) -> None:
        # Keepalive: ping after 5 s of silence and a 2 s pong timeout; OKX allows any N < 30 s.
        self.health_port = free_port()
        self.feeder = self._spawn(
            "feeder",
            [sys.executable, "-m", "collector"],
            {
                **self.credentials(),
                "OKX_WS_URL": self.sim.ws_url,
                "OKX_REST_URL": self.sim.rest_url,
                "OKX_INSTRUMENTS": ",".join(self.insts),
                "OKX_CHANNELS": self.channels,
                "OKX_PING_AFTER": "5",
                "OKX_PONG_TIMEOUT": "2",
                "FEEDER_ID": "fault-matrix",
                "FEEDER_HEALTHY_AFTER": str(HEALTHY_AFTER_S),
                "FEEDER_HEALTH_PORT": str(self.health_port),
            },
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
                "MONGODB_TIMEOUT_MS": "1000",
                "MONGO_CLIENT_FACTORY": CLIENT_FACTORY,
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

    def restart_mongo(self, down_s: float) -> None:
        port, data = self.mongo.address[1], self.mongo.client
        self.mongo.stop()
        time.sleep(down_s)  # the outage itself
        self.mongo = RestartableStandin(port=port, client=data).start()

    def stop(self) -> None:
        for proc in (self.feeder, self.worker):
            if proc is not None and proc.poll() is None:
                kill_quietly(-proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.mongo.stop()
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
        with self.mongo.lock:
            return list(self.mongo.client["okex"][coll].find(query, fields))

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
        order state in MongoDB, nothing the exchange never had, and one Redis order<N> per
        stored event (a redelivered batch numbered twice shows up as `duplicated`)."""
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
        first = min((int(d["cTime"]) for d in docs), default=0)
        events = {(o["ordId"], o["uTime"], o["state"]) for o in self.get("/sim/truth/orders")}
        finals = {
            (o["ordId"], o["uTime"], o["state"])
            for o in self.get("/sim/truth/orders?final=1")
            if first <= int(o["cTime"]) and int(o["uTime"]) <= mark["now_ms"]
        }
        # order<N> numbers handed out minus events stored: > 0 means an event got two numbers
        # (a redelivery numbered twice), < 0 an event stored without its Redis state
        out["orders"] = {
            "missing": len(finals - stored_events),
            "duplicated": self.order_numbers() - len(docs),
            "extra": len(stored_events - events),
            "window": len(finals),
        }
        return out

    def order_numbers(self) -> int:
        """How many order<N> numbers the workers handed out (state Redis, db 1)."""
        state = redis.Redis.from_url(self.redis.url.replace("/0", "/1"), socket_timeout=5)
        try:
            return int(state.get(keys.ORDER_COUNTER) or 0)
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
