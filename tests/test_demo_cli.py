"""`./dev.sh demo`'s command line, its environment file and its summary, without starting a stack.

--help and bad values answer at once and start nothing (the demo's work directory stays empty);
`--seconds=N` is `--seconds N`. The environment file survives a real `source`; the summary
counts what the stores hold (fakeredis, mongomock) and never prints an unknown as 0 or None.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import fakeredis
import mongomock
import pytest

from core import keys
from localrun import demo, demo_report
from localrun.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def _dev_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEMO_WORKDIR": str(tmp_path / "work")}
    return subprocess.run(
        ["./dev.sh", "demo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_describes_the_options_and_starts_nothing(tmp_path):
    done = _dev_demo(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ./dev.sh demo")
    for option in ("--seconds N", "--replay [FILE]", "env.sh", "summary.json"):
        assert option in done.stdout
    assert not (tmp_path / "work").exists()  # the demo makes its work directory first thing


@pytest.mark.parametrize(
    "args, says",
    [
        (["--seconds", "abc"], "wants a number of seconds, not 'abc'"),
        (["--seconds"], "expected one argument"),
        (["--seconds=-3"], "wants a positive number"),
        (["--seconds=inf"], "wants a positive number"),
        (["--minutes", "3"], "unrecognized arguments: --minutes 3"),
    ],
)
def test_bad_values_are_one_line_and_exit_2_before_anything_starts(tmp_path, args, says):
    done = _dev_demo(tmp_path, *args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    # dev.sh's own set-up lines (only when it installs) come first; the demo says one line
    demo_lines = [x for x in lines if not x.startswith("\x1b[1m[dev]")]
    assert len(demo_lines) == 1, done.stderr
    assert demo_lines[0].startswith("./dev.sh demo: error: ") and says in demo_lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("argv", [["--seconds=5"], ["--seconds", "5"], ["--seconds", "5.0"]])
def test_both_spellings_of_seconds_reach_the_run(monkeypatch, argv):
    ran = []
    monkeypatch.setattr(demo, "run", lambda seconds: ran.append(seconds) or 0)
    assert demo.main(argv) == 0
    assert ran == [5.0]


def test_no_seconds_runs_until_stopped(monkeypatch):
    ran = []
    monkeypatch.setattr(demo, "run", lambda seconds: ran.append(seconds) or 0)
    assert demo.main([]) == 0 and ran == [None]


@pytest.mark.parametrize(
    "argv, file", [(["--replay"], str(demo.RECORDING)), (["--replay", "my.jsonl"], "my.jsonl")]
)
def test_replay_takes_an_optional_file_and_starts_no_stack(monkeypatch, argv, file):
    import collector.cli

    replayed = []
    monkeypatch.setattr(collector.cli, "main", lambda a: replayed.append(a) or 0)
    monkeypatch.setattr(demo, "run", lambda seconds: pytest.fail("the stack was started"))
    assert demo.main(argv) == 0
    assert replayed == [["replay", file]]


def _source(env_file: Path, expr: str) -> str:
    done = subprocess.run(
        ["bash", "-c", f'source "$1" && printf %s "{expr}"', "_", str(env_file)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    return done.stdout


def test_env_file_survives_source_with_awkward_values(tmp_path):
    awkward = "pa ss'wo\"rd $HOME `x` \\n"
    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "WEB_PASSWORD": awkward,
        "FEEDER_ID": "demo-feeder",
        "PORT": "5555",
        "MONGODB_URI": "mongodb://h:2",
    }
    path = tmp_path / "env.sh"
    demo_report.write_env_file(
        path, demo_report.env_file_text(env, "/venv dir/bin", {"DEMO_FLOWER_URL": "http://x"})
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the Flower password
    assert _source(path, "$WEB_PASSWORD") == awkward
    assert _source(path, "$REDIS_URL|$MONGODB_URI|$DEMO_FLOWER_URL") == (
        "redis://127.0.0.1:1/0|mongodb://h:2|http://x"
    )
    assert _source(path, "$PATH").startswith("/venv dir/bin:/usr/bin")
    # a second feeder started from that shell must not pose as the demo's
    assert _source(path, "${FEEDER_ID-unset}|${PORT-unset}") == "unset|unset"


def test_env_file_has_every_variable_a_side_command_reads(tmp_path, monkeypatch):
    from okxsim import SimConfig

    # an inherited stand-in factory would make the demo's pymongo path something else
    monkeypatch.setenv("MONGO_CLIENT_FACTORY", "localrun.mongo_standin:client_for")

    class Sim:
        ws_url, rest_url, config = "ws://127.0.0.1:9", "http://127.0.0.1:9", SimConfig()

    env = demo.demo_env(
        redis_url="redis://r",
        mongo_uri="mongodb://127.0.0.1:9",
        sim=Sim,
        health_port=1,
        web_port=2,
        web_password="pw",
    )
    text = demo_report.env_file_text(env, "/bin", {})
    for name in (
        "REDIS_URL",
        "MONGODB_URI",
        "OKX_REST_URL",
        "OKX_WS_URL",
        "OKX_API_KEY",
        "OKX_API_SECRET",
        "OKX_API_PASSPHRASE",
        "WEB_USER",
        "WEB_PASSWORD",
        "PYTHONPATH",
    ):
        assert f"export {name}=" in text, name
    assert "MONGO_CLIENT_FACTORY" not in env and "MONGO_CLIENT_FACTORY" not in text  # pymongo


def test_only_a_standin_uri_gets_the_standin_client(monkeypatch):
    monkeypatch.delenv("MONGO_CLIENT_FACTORY", raising=False)

    class Sim:
        ws_url, rest_url = "ws://127.0.0.1:9", "http://127.0.0.1:9"
        config = type("C", (), {"api_key": "k", "api_secret": "s", "passphrase": "p"})

    def env_for(uri):
        return demo.demo_env(
            redis_url="redis://r",
            mongo_uri=uri,
            sim=Sim,
            health_port=1,
            web_port=2,
            web_password="p",
        )

    assert "MONGO_CLIENT_FACTORY" not in env_for("mongodb://127.0.0.1:9")
    standin = env_for("mongostandin://127.0.0.1:9")
    assert standin["MONGO_CLIENT_FACTORY"] == "localrun.mongo_standin:client_for"


def test_backfill_example_uses_one_task_name_and_a_window_from_now():
    from datetime import UTC, datetime

    from core import contract

    start = demo_report.backfill_example_start(datetime(2026, 12, 1, 9, 8, 7, 654321, tzinfo=UTC))
    assert start == "2026-12-01T09:08:07Z"

    class Sim:
        ws_url, rest_url = "ws://s", "http://s"

    class Redis:
        url, port = "redis://r", 7

    text = demo_report.banner(
        sim=Sim,
        redis_server=Redis,
        mongo_label="m",
        health_port=1,
        web_port=2,
        web_password="pw",
        log=Path("/l"),
        env_file=Path("/d/env.sh"),
        start=start,
    )
    assert "source /d/env.sh" in text
    assert f"python -m tasks.backfill run trades BTC-USDT --start {start}" in text
    assert f"celery -A tasks call {contract.BACKFILL_ALIAS_TASK} " in text
    assert contract.BACKFILL_TASK not in text  # one name in every example: `backfill`


def _stores():
    r = fakeredis.FakeRedis(decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    db[keys.TRADES].insert_many([{"_id": i} for i in range(5)])
    db[keys.TICKERS].insert_one({"_id": 1})
    db[keys.DEAD_LETTERS].insert_many([{"_id": 1}, {"_id": 2}])
    for gap_id, status in (("1", "filled"), ("2", "filled"), ("3", "open"), ("4", "unrepairable")):
        r.zadd(keys.GAPS_ALL, {gap_id: int(gap_id)})
        r.hset(keys.gap_key(gap_id), mapping={"id": gap_id, "status": status})
    r.lpush(keys.DEADLETTER_SPOOL, "x")
    return r, db


def test_summary_counts_what_the_stores_hold():
    r, db = _stores()
    summary = demo_report.gather_summary(r, db, {"tasks.ingest.trades": 3})
    assert summary["mongodb"] == {keys.TRADES: 5, keys.TICKERS: 1, keys.DEAD_LETTERS: 2}
    assert summary["gaps"] == {"filled": 2, "open": 1, "unrepairable": 1}
    assert summary["dead_letters"] == 2 and summary["dead_letters_spooled"] == 1
    text = demo_report.format_summary(
        summary,
        data_note="went with the demo",
        workdir=Path("/w"),
        log=Path("/w/p.log"),
        summary_file=Path("/w/s.json"),
    )
    assert "trades 5" in text and "filled 2, open 1, unrepairable 1" in text
    assert "tasks.ingest.trades 3" in text and "2 in MongoDB, 1 spooled" in text
    assert "went with the demo" in text and "/w/p.log" in text and "/w/s.json" in text
    json.dumps(summary)  # it is also written as JSON


def test_summary_says_unknown_when_a_store_or_flower_does_not_answer():
    class Down:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise ConnectionError("refused")

            return fail

    summary = demo_report.gather_summary(Down(), Down(), None)
    assert summary["mongodb"] is None and summary["gaps"] is None
    assert summary["dead_letters"] is None
    text = demo_report.format_summary(
        summary, data_note="n", workdir=Path("/w"), log=Path("/l"), summary_file=Path("/s")
    )
    assert "None" not in text
    assert "did not answer: ConnectionError: refused" in text and "Flower did not answer" in text


def test_flower_totals_are_summed_over_workers_with_basic_auth():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(
                {
                    "celery@a": {"stats": {"total": {"tasks.ingest.trades": 2, "backfill": 1}}},
                    "celery@b": {"stats": {"total": {"tasks.ingest.trades": 5}}},
                }
            ).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert demo_report.flower_task_totals(url, "demo", "pw") == {
            "backfill": 1,
            "tasks.ingest.trades": 7,
        }
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/api/workers?refresh=1", "Basic ZGVtbzpwdw==")]  # demo:pw


def test_flower_not_listening_is_unknown_not_zero():
    assert demo_report.flower_task_totals(f"http://127.0.0.1:{free_port()}", "u", "p", 1) is None


def test_okxsim_help_describes_every_flag_with_its_default(capsys):
    from okxsim.__main__ import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    usage, _, options = text.partition("options:")
    flags = sorted(set(re.findall(r"\[(--[a-z-]+)", usage)))
    assert len(flags) >= 18, flags
    blocks = re.split(r"\n  (?=-)", options)
    described = {b.split()[0]: " ".join(b.split()) for b in blocks if b.strip().startswith("--")}
    for flag in flags:
        assert "(default: " in described[flag], described[flag]
        words = described[flag].split("(default: ")[0].split()
        assert len(words) >= 3, f"{flag} has no description"  # flag, METAVAR, some words


def test_lock_check_runs_without_the_project(tmp_path):
    # dev.sh runs it with the system python3 before any venv exists
    done = subprocess.run(
        [sys.executable, "-I", str(ROOT / "localrun" / "lockfile.py"), "check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_backfill_example_starts_after_a_trade_okxsim_already_has():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 9, 8, 7, 654321, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    # okxsim's first trade came after the banner's second: the window starts after that trade
    late = demo_report.backfill_example_start(now, traded_ms=now_ms)
    assert late == "2026-12-01T09:08:08Z"
    # a trade exactly on a second: still strictly older than the window's start
    on_second = demo_report.backfill_example_start(now, traded_ms=now_ms // 1000 * 1000)
    assert on_second == "2026-12-01T09:08:08Z"
    # an older trade changes nothing: the window starts now
    assert demo_report.backfill_example_start(now, traded_ms=now_ms - 5_000) == (
        "2026-12-01T09:08:07Z"
    )


@pytest.mark.integration
def test_newest_trade_ms_reads_okxsim_and_is_none_where_nothing_answers(sim_factory):
    import urllib.request

    from tests.polling import wait_for

    sim = sim_factory(instruments=("BTC-USDT",), tick_ms=25)

    def truth() -> list[int]:
        url = f"{sim.rest_url}/sim/truth/trades?instId=BTC-USDT"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return [int(t["ts"]) for t in json.loads(reply.read())["data"]]

    wait_for(truth, 20, interval=0.1, what="a BTC-USDT trade in okxsim")
    ts = demo_report.newest_trade_ms(sim.rest_url, "BTC-USDT")
    assert ts is not None and ts in truth()
    assert demo_report.newest_trade_ms(f"http://127.0.0.1:{free_port()}", "BTC-USDT") is None
