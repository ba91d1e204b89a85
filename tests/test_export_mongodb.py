"""Exports through the production client: pymongo against the MongoDB wire-protocol server of the
`mongodb_uri` fixture (nx-27017, or a real MongoDB given as MONGODB_URI). For every kind and both
formats the command, run as its own process, writes exactly MongoDB's documents as pymongo reads
them back; the cursor asks for bounded batches sorted on dt (command monitoring shows the find
and its getMores); a range cut inside a second keeps its milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from core import keys
from tasks.export import cli
from tasks.export.query import COLLECTION
from tests.test_export import (
    INST,
    T0,
    assert_rows_are_docs,
    documents,
    expected,
    okx_candle,
    read_rows,
    trade,
    trades_candle,
)
from tests.test_operator_errors import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def db(mongodb_uri):
    from core import settings

    client: MongoClient = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    yield client[settings.current().mongodb_db]
    client.close()


def stored(db, kind: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents as pymongo reads them back, in the order of `docs`."""
    by_id = {
        d["_id"]: d for d in db[COLLECTION[kind]].find({"_id": {"$in": [d["_id"] for d in docs]}})
    }
    assert len(by_id) == len(docs)
    return [by_id[d["_id"]] for d in docs]


def export_process(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tasks.export", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("kind", ["trades", "orders", "fills", "candles", "vwap"])
def test_every_row_is_the_stored_document(db, tmp_path, kind, fmt):
    docs = documents(kind, 200, T0, step=333)
    other = [d | {"_id": d["_id"] + "x", "instId": "ETH-USDT"} for d in documents(kind, 20, T0)]
    db[COLLECTION[kind]].insert_many([dict(d) for d in docs + other])
    start, end = T0 + 1_000, T0 + 150 * 333 + 1  # cut inside seconds: milliseconds matter
    out = tmp_path / f"out.{fmt}"
    proc = export_process([kind, INST, "--start", str(start), "--end", str(end), "--format", fmt,
                           "--out", str(out), "--batch-size", "64"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"147 {kind} rows of {INST}" in proc.stderr
    want = stored(db, kind, expected(docs, start, end, kind))
    assert len(want) == 147  # i = 4 .. 150: T0 + 150 * 333 < end
    assert_rows_are_docs(read_rows(out, kind, fmt), want)


def test_ties_and_candle_sources_on_the_server(db, tmp_path):
    ids = [7, 123, 45, 1000, 8, 99]  # one millisecond; by number, not by string
    db[keys.TRADES].insert_many([trade(i, T0, tradeId=str(i)) for i in ids])
    out = tmp_path / "t.csv"
    rng = ["--start", str(T0), "--end", str(T0 + 1)]
    assert (
        export_process(["trades", INST, *rng, "--format", "csv", "--out", str(out)]).returncode == 0
    )
    assert [int(r["tradeId"]) for r in read_rows(out, "trades", "csv")] == sorted(ids)

    okx = [okx_candle(T0 + i * 60_000) for i in range(3)]
    ours = [trades_candle(T0 + i * 60_000) for i in range(3)]
    db[keys.CANDLES].insert_many([dict(d) for d in okx + ours])
    hour = ["--start", str(T0), "--end", str(T0 + 3_600_000)]
    for source, want in (("okx", okx), ("trades", ours)):
        out = tmp_path / f"{source}.parquet"
        proc = export_process(["candles", INST, *hour, "--source", source, "--out", str(out)])
        assert proc.returncode == 0, proc.stderr
        assert_rows_are_docs(read_rows(out, "candles", "parquet"), stored(db, "candles", want))


def test_the_cursor_is_sorted_on_dt_in_bounded_batches(db, tmp_path, monkeypatch):
    db[keys.TRADES].insert_many([trade(i, T0 + i * 10) for i in range(1000)])
    seen: list[tuple[str, dict[str, Any]]] = []

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            seen.append((event.command_name, dict(event.command)))

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    real = cli.open_client

    def monitored(s: Any) -> Any:
        client = real(s)  # the command's own client and settings, watched
        assert client.options.pool_options.socket_timeout == cli.EXPORT_SOCKET_TIMEOUT_MS / 1000
        client.close()
        return MongoClient(s.mongodb_uri, event_listeners=[Listener()],
                           serverSelectionTimeoutMS=s.mongo_timeout_ms)  # fmt: skip

    monkeypatch.setattr(cli, "open_client", monitored)
    out = tmp_path / "t.parquet"
    argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 10**6), "--out", str(out)]
    assert cli.main([*argv, "--quiet", "--batch-size", "100"]) == 0
    finds = [c for name, c in seen if name == "find"]
    more = [c for name, c in seen if name == "getMore"]
    assert len(finds) == 1 and dict(finds[0]["sort"]) == {"dt": 1}
    assert finds[0]["batchSize"] == 100
    assert len(more) >= 9 and all(c["batchSize"] == 100 for c in more)
    assert "aggregate" not in [name for name, _ in seen]  # no bar (--quiet): no count
    assert len(read_rows(out, "trades", "parquet")) == 1000
