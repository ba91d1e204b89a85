"""The stack of bench/redundant.py: tests/fault_stack.py's, with two named feeders of one shard,
a RedBeat beat, and the worker's REST calls counted by a proxy (okxsim keeps no request log).

The feeders reach okxsim directly (their book resyncs are not backfill); only the worker goes
through `RestCounter`, so what it counts is what backfill asked of OKX.
"""

from __future__ import annotations

import http.client
import sys
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from core import keys
from localrun.redis_server import free_port
from tests.fault_stack import CELERY, FaultStack
from tests.workers_fixtures import kill_quietly

FEEDERS = ("feeder-a", "feeder-b")
SHARD = "s1"
CHANNELS = "books,books5,trades-all,tickers,orders"


class RestCounter:
    """A reverse proxy in front of okxsim's REST that records the path of every request."""

    def __init__(self, upstream: str) -> None:
        up = urllib.parse.urlsplit(upstream)
        self.calls: Counter[str] = Counter()
        lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                try:
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                finally:
                    conn.close()
                with lock:
                    counter.calls[urllib.parse.urlsplit(self.path).path] += 1
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, prefixes: tuple[str, ...]) -> dict[str, int]:
        return {p: n for p, n in sorted(self.calls.items()) if p.startswith(prefixes)}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RedundantStack(FaultStack):
    """FaultStack with two named feeders, a RedBeat beat and the worker's REST counted."""

    def __init__(self, workdir: Path, insts: tuple[str, ...], full_every_s: float) -> None:
        self.rest: RestCounter | None = None
        sim = {"tick_ms": 100}  # OKX's own cadence: nine books at 10 updates/s, twice
        super().__init__(workdir, insts=insts, channels=CHANNELS, sim=sim, worker_processes=2)
        self.rest = RestCounter(self.sim.rest_url)
        self.full_every_s = full_every_s
        self.feeders: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        self.beat: Any = None
        self.state = redis.Redis.from_url(self.redis.url.replace("/0", "/1"), socket_timeout=5)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Any:
        if name == "worker" and self.rest is not None:
            env = {**env, "OKX_REST_URL": self.rest.url}
        return super()._spawn(name, argv, env)

    def start_named_feeder(self, name: str, **env: str) -> None:
        """Feeder `name` of the shard; `env` adds or overrides its settings."""
        self.ports[name] = free_port()
        settings = {
            "FEEDER_SHARD": SHARD,
            "FEEDER_FULL_BOOK_EVERY": str(self.full_every_s),
            "FEEDER_HEALTHY_AFTER": "1",
            **env,
        }
        self.feeders[name] = self._spawn(
            name,
            [sys.executable, "-m", "collector"],
            self.feeder_env(name, self.ports[name], **settings),
        )

    def start_beat(self) -> None:
        env = {
            "STATE_REDIS_URL": self.redis.url.replace("/0", "/1"),
            "BACKFILL_SWEEP_S": "5",
            # every REST call the proxy counts is then a gap repair or an account snapshot
            "AUDIT_EVERY_S": "86400",
            "BACKFILL_FILLS_EVERY_S": "86400",
        }
        argv = [CELERY, "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler", "-l", "INFO"]
        self.beat = self._spawn("beat", argv, env)

    def live(self, name: str) -> bool:
        self.health_port = self.ports[name]  # FaultStack's health probe reads this port
        return self.feeders[name].poll() is None and self.feeder_live()

    def kill(self, name: str) -> None:
        kill_quietly(-self.feeders[name].pid)
        self.feeders[name].wait(10)

    def backlog(self) -> dict[str, int]:
        """What settled() waits for: queued and unacked tasks, gaps still open."""
        b = self.broker
        return {
            "ingest": b.llen("ingest"),
            "backfill": b.llen("backfill"),
            "unacked": b.hlen(keys.KOMBU_UNACKED),
            "gaps_open": b.zcard(keys.GAPS_OPEN),
        }

    def now_ms(self) -> int:
        return int(self.sim.call(lambda ex: ex.clock.now_ms()))

    def stop(self) -> None:
        for proc in (self.beat, *self.feeders.values()):
            if proc is not None and proc.poll() is None:
                kill_quietly(-proc.pid)
                proc.wait(10)
        if self.rest is not None:
            self.rest.stop()
        self.state.close()
        super().stop()
