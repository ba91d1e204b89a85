"""Exports on mongomock: for every kind and both formats, the file's rows are MongoDB's documents,
every field of every row, in time order, and nothing else; decimals exact beside their floats;
a document that does not fit is left out and counted, never written half; the temp file.

The documents are built in the writers' shapes (tasks/documents.py for trades, orders, fills and
OKX candles; the shared contract for candles from trades and vwap). `assert_rows_are_docs` is
the comparison every export test uses (also tests/test_export_mongodb.py): it rebuilds each
field from the row by the rules of docs/export.md, independently of tasks/export/columns.py.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mongomock
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from core import keys
from tasks.documents import mongo_doc
from tasks.export import cli
from tasks.export.columns import arrow_schema
from tasks.export.query import COLLECTION, make_request

T0 = 1_763_000_000_000  # 2025-11-13, ms
INST = "BTC-USDT"


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# ----- documents in the writers' shapes ---------------------------------------------------------


def trade(i: int, ts: int, px: str = "43210.5", sz: str = "0.001", inst: str = INST, **kw: Any):
    rec = {
        "instId": inst,
        "tradeId": str(1_000_000 + i),
        "px": px,
        "sz": sz,
        "side": "buy" if i % 2 else "sell",
        "ts": str(ts),
        "count": "1",
        "source": "0",
        "seqId": None if i % 3 else 5_000_000_000 + i,
        "channel": "trades",
        **kw,
    }
    return mongo_doc("trades", rec, validated=i % 4 == 0)


def order(i: int, ts: int, inst: str = INST) -> dict[str, Any]:
    rec = {
        "instType": "SPOT",
        "instId": inst,
        "ordId": str(700_000_000_000 + i),
        "clOrdId": f"c{i}",
        "tag": "",
        "px": "43000.1",
        "sz": "0.25",
        "ordType": "limit",
        "side": "buy",
        "posSide": "",
        "tdMode": "cash",
        "fillPx": "" if i % 2 else "43000.1",
        "tradeId": "" if i % 2 else str(900 + i),
        "fillSz": "0" if i % 2 else "0.25",
        "fillTime": "" if i % 2 else str(ts),
        "fillFee": "-0.00000025",
        "state": "live" if i % 2 else "filled",
        "accFillSz": "0",
        "avgPx": "",
        "lever": "",
        "fee": "0",
        "pnl": "0",
        "reduceOnly": "false",
        "attachAlgoOrds": [{"attachAlgoId": "1", "tpTriggerPx": "50000"}],
        "linkedAlgoOrd": {"algoId": ""},
        "uTime": str(ts),
        "cTime": str(ts - 5),
        "someFieldOkxAddsLater": {"nested": [1, "2"]},  # kept, in `extra`
    }
    return mongo_doc("orders", rec)


def fill(i: int, ts: int, inst: str = INST) -> dict[str, Any]:
    rec = {
        "instType": "SPOT",
        "instId": inst,
        "tradeId": str(-i if i % 5 == 0 else 800 + i),  # negative: liquidation/ADL
        "ordId": str(700_000_000_000 + i),
        "clOrdId": "",
        "billId": str(600_000_000_000 + i),
        "tag": "",
        "fillPx": "43000.12345678",
        "fillSz": "0.00001",
        "side": "sell",
        "posSide": "net",
        "execType": "M",
        "feeCcy": "USDT",
        "fee": "-0.0001",
        "fillPnl": "",
        "ts": str(ts),
        "fillTime": str(ts),
        "source": "rest",
    }
    return mongo_doc("fills", rec)


def okx_candle(ts: int, bar: str = "1m", inst: str = INST, source: str | None = None):
    rec = {
        "instId": inst,
        "bar": bar,
        "ts": str(ts),
        "o": "43000",
        "h": "43100.5",
        "l": "42950.25",
        "c": "43050",
        "vol": "12.345",
        "volCcy": "531000.1",
        "volCcyQuote": "531000.1",
        "confirm": "1",
    }
    if source is not None:  # new OKX writes may say so; older ones have no `source`
        rec["source"] = source
    return mongo_doc("candles", rec)


def trades_candle(ts: int, bar: str = "1m", inst: str = INST, n: int = 7) -> dict[str, Any]:
    """A candle built from trades, as the shared contract says tasks/derive writes it."""
    return {
        "_id": f"{inst}:{bar}:{ts}:trades",
        "instId": inst,
        "bar": bar,
        "ts": str(ts),
        "o": "43000",
        "h": "43100.5",
        "l": "42950.25",
        "c": "43050",
        "vol": "12.345",
        "volCcy": "531000.1",
        "n": n,
        "complete": n % 2 == 1,
        "final": n % 3 == 1,
        "source": "trades",
        "dt": dt(ts),
    }


def vwap(ts: int, inst: str = INST, value: str = "43012.123456789012345678901234567890") -> dict:
    return {
        "_id": f"{inst}:{ts}",
        "instId": inst,
        "ts": ts,
        "vwap": value,
        "window_ms": 300_000,
        "n": 42,
        "validated": ts % 2000 == 0,
        "dt": dt(ts),
    }


def documents(kind: str, n: int, start: int, step: int = 250) -> list[dict[str, Any]]:
    build = {
        "trades": lambda i, t: trade(i, t),
        "orders": lambda i, t: order(i, t),
        "fills": lambda i, t: fill(i, t),
        "candles": lambda i, t: okx_candle(t),
        "vwap": lambda i, t: vwap(t),
    }[kind]
    return [build(i, start + i * step) for i in range(n)]


# ----- the comparison ---------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def assert_row_is_doc(row: dict[str, Any], doc: dict[str, Any]) -> None:
    """Every field of `doc` is in `row` by the rules of docs/export.md, and `row` holds nothing
    `doc` does not."""
    names = set(row) - {"extra"}
    floats = {n for n in names if n.endswith("_f64") and n[: -len("_f64")] in names}
    columns = names - floats
    extra = json.loads(row["extra"]) if row["extra"] is not None else {}
    assert not set(extra) & columns, "a field both in a column and in extra"
    assert set(doc) == {c for c in columns if c in doc} | set(extra), (set(doc), columns, extra)
    for name in columns:
        v, d = row[name], doc.get(name)
        if v is None:
            assert d is None, (name, d)
        elif isinstance(v, datetime):
            assert v.tzinfo is not None and v == _utc(d), (name, v, d)
        elif isinstance(d, (list, dict)):
            assert isinstance(v, str) and json.loads(v) == d, (name, v, d)
        elif isinstance(v, int) and not isinstance(v, bool) and isinstance(d, str):
            assert str(v) == d, (name, v, d)  # ms times: int64 from OKX's digit string
        elif isinstance(v, int) and not isinstance(v, bool):  # pymongo's int64 is bson.Int64
            assert isinstance(d, int) and not isinstance(d, bool) and v == d, (name, v, d)
        else:
            assert type(v) is type(d) and v == d, (name, v, d)
    for name in floats:
        exact = doc.get(name[: -len("_f64")])
        assert row[name] == (float(exact) if exact else None), (name, row[name], exact)
    for name, value in extra.items():
        assert value == doc[name], (name, value, doc[name])


def assert_rows_are_docs(rows: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
    assert [r["_id"] for r in rows] == [d["_id"] for d in docs]
    for row, doc in zip(rows, docs):
        assert_row_is_doc(row, doc)


def read_rows(path: Path | str, kind: str, fmt: str) -> list[dict[str, Any]]:
    """The file's rows; CSV read with the documented column types (quoted "" is "", empty is
    null)."""
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    return read_csv_bytes(Path(path).read_bytes(), kind)


def read_csv_bytes(data: bytes, kind: str) -> list[dict[str, Any]]:
    import io

    schema = arrow_schema(kind)
    options = pacsv.ConvertOptions(
        column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    parse = pacsv.ParseOptions(newlines_in_values=True)  # quoted text may hold newlines
    table = pacsv.read_csv(io.BytesIO(data), parse_options=parse, convert_options=options)
    assert table.schema.names == schema.names
    return table.to_pylist()


def expected(docs: list[dict[str, Any]], start: int, end: int, kind: str) -> list[dict]:
    """The documents of [start, end) in time order, ties in the kind's documented order."""
    ties = {
        "trades": lambda d: int(d["tradeId"]),
        "orders": lambda d: (int(d["ordId"]), d["state"]),
        "fills": lambda d: int(d["billId"]),
    }.get(kind, lambda d: d["_id"])
    inside = [d for d in docs if dt(start) <= _utc(d["dt"]) < dt(end)]
    return sorted(inside, key=lambda d: (_utc(d["dt"]), ties(d)))


# ----- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def mongo(monkeypatch):
    """One mongomock client that the command line gets instead of pymongo's."""
    client = mongomock.MongoClient()
    monkeypatch.setattr("tasks.export.cli.open_client", lambda *a, **k: client)
    return client


def run_export(argv: list[str]) -> int:
    return cli.main([*argv, "--quiet"])


# ----- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("kind", ["trades", "orders", "fills", "candles", "vwap"])
def test_every_row_is_the_stored_document(mongo, tmp_path, kind, fmt):
    docs = documents(kind, 300, T0)
    other = [d | {"_id": d["_id"] + "x", "instId": "ETH-USDT"} for d in documents(kind, 20, T0)]
    mongo.okex[COLLECTION[kind]].insert_many(docs + other)
    start, end = T0 + 1_000, T0 + 250 * 250  # cuts both ends: [start, end)
    out = tmp_path / f"out.{fmt}"
    argv = [kind, INST, "--start", str(start), "--end", str(end), "--format", fmt, "--out"]
    assert run_export([*argv, str(out), "--batch-size", "37"]) == 0
    rows = read_rows(out, kind, fmt)
    want = expected(docs, start, end, kind)
    assert len(want) == 246
    assert_rows_are_docs(rows, want)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_trades_of_one_millisecond_come_in_trade_id_order_across_batches(mongo, tmp_path):
    ids = list(range(95, 125))  # 95..124: string order would put "100" before "95"
    random.Random(3).shuffle(ids)
    docs = [trade(i, T0 + (i // 110) * 1000, tradeId=str(i)) for i in ids]  # 2 milliseconds
    mongo.okex[keys.TRADES].insert_many(docs)
    out = tmp_path / "t.parquet"
    assert run_export(["trades", INST, "--start", str(T0), "--end", str(T0 + 60_000), "--out",
                       str(out), "--batch-size", "4"]) == 0  # fmt: skip
    rows = read_rows(out, "trades", "parquet")
    assert [int(r["tradeId"]) for r in rows] == sorted(ids)


def test_candles_by_bar_and_source(mongo, tmp_path):
    okx_old = [okx_candle(T0 + i * 60_000) for i in range(5)]  # no `source` field: okx
    okx_new = [okx_candle(T0 + i * 60_000, source="okx", inst="ETH-USDT") for i in range(5)]
    ours = [trades_candle(T0 + i * 60_000) for i in range(5)]
    five = [okx_candle(T0, bar="5m"), trades_candle(T0, bar="5m")]
    for d in okx_new:
        d["instId"] = INST
        d["_id"] = d["_id"].replace("ETH-USDT", "BTC-USDT") + ":new"
    mongo.okex[keys.CANDLES].insert_many(okx_old + okx_new + ours + five)
    rng = ["--start", str(T0), "--end", str(T0 + 3600_000)]

    def export(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "c.parquet"
        assert run_export(["candles", INST, *rng, "--out", str(out), *extra]) == 0
        return read_rows(out, "candles", "parquet")

    assert_rows_are_docs(export("--source", "trades"), ours)
    assert_rows_are_docs(export(), expected(okx_old + okx_new, T0, T0 + 3600_000, "candles"))
    assert_rows_are_docs(export("--bar", "5m", "--source", "trades"), [five[1]])


def test_decimals_are_exact_strings_beside_floats(mongo, tmp_path):
    widest = "9" * 40 + "." + "0" * 39 + "1"  # the widest decimal okx/schemas.py accepts
    docs = [
        trade(1, T0, px=widest, sz="0.000000000000000000000000000000000000000001"),
        trade(2, T0 + 1, px="0.1", sz="3"),
    ]
    mongo.okex[keys.TRADES].insert_many(docs)
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"d.{fmt}"
        argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 5), "--format", fmt]
        assert run_export([*argv, "--out", str(out)]) == 0
        rows = read_rows(out, "trades", fmt)
        assert [r["px"] for r in rows] == [widest, "0.1"]
        assert rows[0]["px_f64"] == 1e40 and rows[1]["px_f64"] == 0.1
        assert rows[0]["sz"] == "0.000000000000000000000000000000000000000001"
    schema = pq.read_schema(tmp_path / "d.parquet")
    assert schema.field("px").type == pa.string() and schema.field("px_f64").type == pa.float64()
    assert schema.field("ts").type == pa.int64()
    assert schema.field("dt").type == pa.timestamp("ms", tz="UTC")


def test_a_document_that_does_not_fit_is_left_out_counted_and_named(mongo, tmp_path, capsys):
    docs = [trade(i, T0 + i) for i in range(10)]
    docs[3]["px"] = 43210.5  # a number where OKX's string belongs
    docs[7]["ts"] = "soon"
    mongo.okex[keys.TRADES].insert_many(docs)
    out = tmp_path / "bad.csv"
    argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 100), "--format", "csv"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    rows = read_rows(out, "trades", "csv")
    assert_rows_are_docs(rows, [d for i, d in enumerate(docs) if i not in (3, 7)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "8 trades rows" in err[0] and "2 documents left out" in err[0]
    assert f"{INST}:1000003: px: expected a string" in err[0]
    assert run_export([*argv, "--out", str(out)]) == 0  # --quiet still says what was left out
    assert "2 documents left out" in capsys.readouterr().err


def test_an_empty_range_is_a_file_with_the_columns_and_no_rows(mongo, tmp_path):
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"empty.{fmt}"
        argv = ["vwap", INST, "--start", str(T0), "--end", str(T0 + 1), "--format", fmt]
        assert run_export([*argv, "--out", str(out)]) == 0
        assert read_rows(out, "vwap", fmt) == []
    assert pq.read_schema(tmp_path / "empty.parquet").names == arrow_schema("vwap").names


def test_csv_to_stdout(mongo, capsysbinary):
    docs = documents("fills", 50, T0)
    mongo.okex[keys.FILLS].insert_many(docs)
    argv = ["fills", INST, "--start", str(T0), "--end", str(T0 + 10_000), "--format", "csv"]
    assert run_export([*argv, "--out", "-"]) == 0
    rows = read_csv_bytes(capsysbinary.readouterr().out, "fills")
    assert_rows_are_docs(rows, expected(docs, T0, T0 + 10_000, "fills"))


def test_iso_times_and_ms_times_are_the_same_range(mongo, tmp_path):
    docs = documents("trades", 100, T0, step=1000)
    mongo.okex[keys.TRADES].insert_many(docs)
    iso_start = dt(T0 + 10_000).isoformat().replace("+00:00", "Z")
    iso_end = dt(T0 + 20_000).replace(tzinfo=None).isoformat()  # naive = UTC
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert (
        run_export(["trades", INST, "--start", iso_start, "--end", iso_end, "--out", str(a)]) == 0
    )
    assert run_export(["trades", INST, "--start", str(T0 + 10_000), "--end", str(T0 + 20_000),
                       "--out", str(b)]) == 0  # fmt: skip
    assert read_rows(a, "trades", "parquet") == read_rows(b, "trades", "parquet")
    assert len(read_rows(a, "trades", "parquet")) == 10


def test_an_error_mid_export_leaves_no_file_and_keeps_the_old_one(mongo, tmp_path, monkeypatch):
    mongo.okex[keys.TRADES].insert_many(documents("trades", 100, T0))
    out = tmp_path / "keep.parquet"
    out.write_bytes(b"the previous export")

    calls = {"n": 0}
    from tasks.export import stream

    real = stream.to_batch

    def interrupted(kind, docs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(kind, docs)

    monkeypatch.setattr(stream, "to_batch", interrupted)
    argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 10**6), "--out", str(out)]
    assert run_export([*argv, "--batch-size", "10"]) == 130
    assert calls["n"] == 3
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.parquet"]


def test_a_disk_failing_mid_write_is_one_line_exit_1_and_no_file(mongo, tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    import errno

    from tasks.export import sinks

    mongo.okex[keys.TRADES].insert_many(documents("trades", 100, T0))
    real = sinks.CsvSink.write
    calls = {"n": 0}

    def full(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, batch)

    monkeypatch.setattr(sinks.CsvSink, "write", full)
    out = tmp_path / "t.csv"
    argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 10**6), "--format", "csv"]
    assert run_export([*argv, "--out", str(out), "--batch-size", "10"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m tasks.export: cannot write {out}: No space left on device"]
    assert list(tmp_path.iterdir()) == []


def test_parquet_is_written_in_row_groups(mongo, tmp_path, monkeypatch):
    monkeypatch.setattr("tasks.export.sinks.ROW_GROUP_ROWS", 100)
    mongo.okex[keys.TRADES].insert_many(documents("trades", 1000, T0, step=10))
    out = tmp_path / "g.parquet"
    argv = ["trades", INST, "--start", str(T0), "--end", str(T0 + 10**6), "--out", str(out)]
    assert run_export([*argv, "--batch-size", "30"]) == 0
    meta = pq.ParquetFile(out).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [120] * 8 + [40]  # 4 batches of 30 reach 100: one group each, no remainder


def test_request_checks():
    from core.errors import PlanError

    ok = make_request("trades", INST, T0, T0 + 1)
    assert (ok.start_ms, ok.end_ms, ok.bar, ok.source) == (T0, T0 + 1, "1m", "okx")
    for args, kw, words in [
        (("books", INST, T0, T0 + 1), {}, "unknown kind"),
        (("trades", " ", T0, T0 + 1), {}, "instrument"),
        (("trades", INST, T0 + 1, T0 + 1), {}, "must be after"),
        (("trades", INST, "yesterday", T0), {}, "--start"),
        (("trades", INST, T0, 1_700_000_000), {}, "seconds given"),
        (("candles", INST, T0, T0 + 1), {"bar": "7m"}, "unknown bar"),
        (("candles", INST, T0, T0 + 1), {"source": "mine"}, "unknown source"),
        (("trades", INST, T0, T0 + 1), {"bar": "1m"}, "candles only"),
    ]:
        with pytest.raises(PlanError, match=words):
            make_request(*args, **kw)


def test_the_bench_trades_are_valid_okx_trades_and_export_exactly(mongo, tmp_path):
    from bench.export import T0 as BENCH_T0
    from bench.export import okxsim_trades
    from okx.schemas import validate_row

    docs = list(okxsim_trades(500, rate=10.0))
    fields = ("instId", "tradeId", "px", "sz", "side", "ts", "count", "source", "seqId")
    assert all(validate_row("trades", {f: d[f] for f in fields}) is None for d in docs)
    assert int(docs[-1]["ts"]) - int(docs[0]["ts"]) == 49_900  # 10 per second
    mongo.okex[keys.TRADES].insert_many([dict(d) for d in docs])
    out = tmp_path / "b.parquet"
    argv = ["trades", "BTC-USDT", "--start", str(BENCH_T0), "--end", str(BENCH_T0 + 50_000)]
    assert run_export([*argv, "--out", str(out)]) == 0
    assert_rows_are_docs(read_rows(out, "trades", "parquet"), docs)
