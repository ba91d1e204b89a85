"""The Procfile, run like production (issue #7 acceptance).

The big test runs the Procfile's `release`, then `web`, `feeder`, `worker` and `beat` through
honcho (localrun/procfile.py, Heroku's 30 s grace) against okxsim, a real redis-server and the
MongoDB stand-in for 60 s; checks data in Redis and MongoDB, Flower's authentication and task
list, the feeder's /healthz and `python -m collector status`; then sends SIGTERM as Heroku does:
every process must be gone within 30 s, none killed, and every trade the feeder received must be
stored or still queued (nothing lost).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis

from localrun.demo import demo_env
from localrun.processes import alive, descendants, identities
from localrun.procfile import PROCFILE, read_procfile
from localrun.redis_server import free_port
from tests.feeder_fixtures import batches_of, decode_task
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent
RUN_S = float(os.environ.get("PROCFILE_TEST_SECONDS", "60"))  # the issue asks for 60 s
HEROKU_GRACE_S = 30


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return str(pid)


# ----- the Procfile itself ----------------------------------------------------------------------


def test_procfile_declares_the_heroku_process_types():
    procs = read_procfile()
    assert list(procs) == ["release", "web", "feeder", "worker", "beat"]
    assert "tasks.migrate" in procs["release"]
    # one process on $PORT: the read API, the dashboard and Flower under /flower (web/__main__.py)
    assert procs["web"] == "exec python -m web"
    assert "python -m collector" in procs["feeder"]
    # each scaled feeder dyno its own, stable FEEDER_ID (feeder.1, feeder.2: docs/redundancy.md)
    assert procs["feeder"].startswith("FEEDER_ID=${FEEDER_ID:-$DYNO} exec ")
    worker = procs["worker"]
    assert "REMAP_SIGTERM=SIGQUIT" in worker and "-Q ingest,history,backfill" in worker
    assert " -E" in worker and "WORKER_CONCURRENCY" in worker
    assert "beat" in procs["beat"] and "redbeat.RedBeatScheduler" in procs["beat"]
    # `exec`: the process itself gets Heroku's SIGTERM and its exit code is reported, no shell
    assert all(
        cmd.split("exec ", 1)[0].strip()
        in ("", "REMAP_SIGTERM=SIGQUIT", "FEEDER_ID=${FEEDER_ID:-$DYNO}")
        for cmd in procs.values()
    )


@pytest.mark.parametrize(
    "env, auth, error",
    [
        ({"WEB_USER": "ops", "WEB_PASSWORD": "p:w,x"}, ["ops:p:w,x"], None),
        ({"WEB_USER": "ops"}, None, "set both WEB_USER and WEB_PASSWORD"),
        ({"WEB_USER": "o:ps", "WEB_PASSWORD": "pw"}, None, "must not contain ':'"),
        ({"FLOWER_BASIC_AUTH": "a:b"}, None, None),
        (
            {
                "FLOWER_AUTH_PROVIDER": "flower.views.auth.GithubLoginHandler",
                "FLOWER_AUTH": ".*@x.io",
            },
            None,
            None,
        ),
        ({"WEB_NO_AUTH": "1"}, None, None),
        ({}, None, "refusing to start Flower without authentication"),
        ({"WEB_NO_AUTH": "0"}, None, "refusing"),
    ],
)
def test_web_authentication_rules(env, auth, error):
    got_auth, got_error = _flowerconfig_function()(env)
    assert got_auth == auth
    assert (got_error is None) if error is None else (error in got_error)


def _flowerconfig_function():
    """web_basic_auth without executing the file's module-level checks."""
    source = (ROOT / "flowerconfig.py").read_text()
    namespace: dict = {}
    exec(compile(source.split("\n_auth, _error")[0], "flowerconfig.py", "exec"), namespace)
    return namespace["web_basic_auth"]


@pytest.mark.integration
def test_web_refuses_to_start_without_credentials(redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "WEB_"))} | {
        "REDIS_URL": redis_url,
        "PORT": str(free_port()),
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        read_procfile()["web"],
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start Flower without authentication" in done.stderr


# ----- the 60 s production-like run ---------------------------------------------------------------


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _queued_trade_ids(client: redis.Redis) -> dict[str, set[int]]:
    """Trades inside tasks still on the broker: queued, or fetched and not yet acknowledged
    (kombu puts those back after the visibility timeout). Both are kept, not lost."""
    raws = list(client.lrange("ingest", 0, -1))
    for value in client.hvals("unacked"):
        raws.append(orjson.dumps(orjson.loads(value)[0]))
    out: dict[str, set[int]] = {}
    for raw in raws:
        for batch in batches_of(*decode_task(raw)):
            if batch["kind"] == "trades":
                for rec in batch["records"]:
                    out.setdefault(rec["instId"], set()).add(int(rec["tradeId"]))
    return out


def _truth_ids(sim, inst: str) -> set[int]:
    with urllib.request.urlopen(f"{sim.rest_url}/sim/truth/trades?instId={inst}", timeout=5) as r:
        return {int(t["tradeId"]) for t in orjson.loads(r.read())["data"]}


def _gap_ids(client: redis.Redis, inst: str) -> set[int]:
    """Trade ids inside recorded gaps (exclusive bounds): known and queued for backfill."""
    out: set[int] = set()
    for gid in client.zrange("gaps:all", 0, -1):
        g = client.hgetall(f"gap:{gid.decode()}")
        g = {k.decode(): v.decode() for k, v in g.items()}
        if (
            g.get("instId") == inst
            and g.get("channel", "").startswith("trades")
            and g.get("start_id")
            and g.get("end_id")
        ):
            out.update(range(int(g["start_id"]) + 1, int(g["end_id"])))
    return out


@pytest.mark.integration
def test_procfile_processes_run_60s_and_stop_within_heroku_grace(redis_url, tmp_path):
    from localrun.mongo_standin import StandinClient
    from okxsim import OkxSim, SimConfig

    sim = OkxSim(SimConfig(port=0)).start()
    mongo_port = free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "localrun.mongo_standin", "--port", str(mongo_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runner = None
    seen: set = set()
    try:
        health_port, web_port = free_port(), free_port()
        password = "pw-" + secrets.token_urlsafe(12)
        env = demo_env(
            redis_url=redis_url,
            mongo_uri=f"mongostandin://127.0.0.1:{mongo_port}",
            sim=sim,
            health_port=health_port,
            web_port=web_port,
            web_password=password,
        )
        env.pop("CELERY_SOFT_SHUTDOWN_TIMEOUT", None)  # production's default, not the demo's 3 s
        env["FEEDER_ID"] = "procfile-feeder"
        mongo = StandinClient(f"mongostandin://127.0.0.1:{mongo_port}")
        db = mongo["okex"]
        wait_for(lambda: _ping(db), 20, what="MongoDB stand-in")

        # Release phase: the indexes exist before any worker starts.
        release = subprocess.run(
            read_procfile()["release"],
            shell=True,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert release.returncode == 0, release.stderr
        assert "natural_key" in str(db["trades"].index_information())

        log = tmp_path / "processes.log"
        started = time.monotonic()
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localrun.procfile",
                "--procfile",
                str(PROCFILE),
                "--log",
                str(log),
                "web",
                "feeder",
                "worker",
                "beat",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        client = redis.Redis.from_url(redis_url)
        health = f"http://127.0.0.1:{health_port}/healthz"
        flower = f"http://127.0.0.1:{web_port}/flower"

        # The feeder's health endpoint reports live data.
        def live_health():
            code, body = _get(health)
            h = orjson.loads(body) if code == 200 else None
            # Every connection live, not just the first one to publish: the private and
            # business connections may still be logging in when the public one has data.
            if not h or h["data"]["published_records"] == 0:
                return None
            return h if all(c["state"] == "live" for c in h["connections"]) else None

        h = wait_for(live_health, 60, interval=0.5, what=f"live /healthz; log:\n{_tail(log)}")
        assert h["status"] == "ok" and h["data"]["last_message_age_s"] < 5

        # Flower asks for credentials, and lists ingest tasks (worker events are on).
        wait_for(
            lambda: _get(flower + "/healthcheck")[0] == 200, 60, interval=0.5, what="Flower up"
        )
        assert _get(flower + "/api/tasks")[0] == 401
        assert _get(flower + "/api/tasks", ("demo", "wrong"))[0] == 401

        def ingest_tasks():
            code, body = _get(flower + "/api/tasks?limit=200", ("demo", password))
            assert code in (200, 0), code
            tasks = orjson.loads(body).values() if code == 200 else ()
            listed = [
                f"{t.get('name')} {t.get('args')}"
                for t in tasks
                if (t.get("name") or "").startswith("tasks.ingest.")
            ]
            # trades and books records (per-kind tasks, or mixed ones whose label lists the
            # kinds), not just the first task Flower happened to see
            text = " ".join(listed)
            return listed if "trades" in text and "books" in text else None

        wait_for(ingest_tasks, 40, interval=1, what="trades and books ingest tasks in Flower")

        # The read API on the same port: behind the same credentials, health open and "ok"
        # once the feeder and a worker both answer.
        api = f"http://127.0.0.1:{web_port}/api/v1"
        assert _get(api + "/instruments")[0] == 401
        code, body = _get(api + "/instruments", ("demo", password))
        assert code == 200 and "BTC-USDT" in orjson.loads(body)["items"]
        wait_for(lambda: _get(api + "/health")[0] == 200, 30, interval=0.5, what="API health ok")

        # `python -m collector status` sees the feeder and the backlog (the stack can be up
        # within a second here, so poll rather than read once).
        def status_report():
            st = subprocess.run(
                [sys.executable, "-m", "collector", "status", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return orjson.loads(st.stdout)

        deadline = time.monotonic() + 20
        report = status_report()
        while not report["healthy"] and time.monotonic() < deadline:
            time.sleep(0.5)
            report = status_report()
        assert report["healthy"], report["problems"]
        assert [f["id"] for f in report["feeders"]] == ["procfile-feeder"]

        # Run for the full minute, every process staying up.
        while time.monotonic() - started < RUN_S:
            assert runner.poll() is None, f"a Procfile process exited early:\n{_tail(log)}"
            seen |= identities(descendants(runner.pid))
            time.sleep(1)
        assert client.hget("ticker:BTC-USDT", "last") and int(client.get("order:counter")) > 0
        assert db["tickers"].count_documents({}) > 0 and db["books"].count_documents({}) > 0

        # SIGTERM, as Heroku sends it: every process must be gone within the 30 s grace.
        seen |= identities(descendants(runner.pid))
        assert len(seen) >= 5  # the four process types, plus the worker's pool
        t0 = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        try:
            wait_for(lambda: not any(alive(i) for i in seen), HEROKU_GRACE_S, interval=0.1)
        except AssertionError:
            left = [_cmdline(pid) for pid, _ in seen if alive((pid, _))]
            raise AssertionError(
                f"still running {HEROKU_GRACE_S} s after SIGTERM: {left}\nlog:\n{_tail(log)}"
            ) from None
        stop_s = time.monotonic() - t0
        assert runner.wait(10) == 143  # honcho: stopped by SIGTERM
        text = log.read_text()
        assert "SIGKILL" not in text, "honcho had to kill a process"
        assert "feeder stopped" in text and "records published" in text
        print(f"\nall {len(seen)} processes exited {stop_s:.1f} s after SIGTERM")

        # Beat released its RedBeat lock (a clean shutdown, no 25-minute takeover wait).
        assert not client.exists("redbeat::lock")

        # Nothing lost: every trade the feeder received (up to its watermark) is in MongoDB or
        # still on the broker, except inside recorded gaps.
        queued = _queued_trade_ids(client)
        checked = 0
        for inst in env["OKX_INSTRUMENTS"].split(","):
            mark = client.hget(f"wm:trades-all:{inst}", "id")
            if mark is None:
                continue
            stored = {int(d["tradeId"]) for d in db["trades"].find({"instId": inst})}
            have = stored | queued.get(inst, set())
            assert have, inst
            lo, hi = min(have), max(have)
            assert hi >= int(mark), f"{inst}: last stored/queued {hi} < watermark {mark.decode()}"
            want = {i for i in _truth_ids(sim, inst) if lo <= i <= hi} - _gap_ids(client, inst)
            missing = want - have
            assert not missing, f"{inst}: {len(missing)} trades lost, e.g. {sorted(missing)[:5]}"
            checked += len(want)
        assert checked > 100

        # Structured logs, and no secret in any process's output.
        feeder_lines = [x for x in text.splitlines() if " feeder " in x[:20] and "| " in x]
        assert feeder_lines and all(" level=" in x for x in feeder_lines)
        for secret in (password, env["OKX_API_SECRET"], env["OKX_API_PASSPHRASE"]):
            assert secret not in text
    finally:
        if runner is not None and runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            try:
                runner.wait(HEROKU_GRACE_S + 5)
            except subprocess.TimeoutExpired:
                runner.kill()
        from localrun.processes import kill_all

        kill_all(seen, grace_s=0.5)
        standin.terminate()
        standin.wait(10)
        sim.stop()


def _ping(db) -> bool:
    try:
        db.command("ping")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text().splitlines()[-n:])
    except OSError:
        return "(no log)"
