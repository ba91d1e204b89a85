"""Data and clients for the read API's tests (tests/test_web_*.py).

The state and history are written the way the workers write them (tasks.writers.Store over the
records of tests/workers_fixtures.py, core.gaps.record_gap for the ledger), so the API is tested
against what production stores, not against documents shaped by hand. Derived data (VWAP, candles
from trades) is written in the shared contract's shape (/work/tools/contract.md), since its
writer lives on another branch.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from core import keys
from core.gaps import Gap, record_gap
from core.settings import WorkerSettings
from tasks import documents
from tasks.writers import Store
from tests.workers_fixtures import T0, one_of_each, trade
from web.app import create_app
from web.auth import Credentials
from web.stores import Stores

TOKEN = "t0ken-for-the-tests-9f3a"
USER, PASSWORD = "ops", "s3cret:with,punctuation"
INST = "BTC-USDT"
SETTINGS = WorkerSettings(books_sample_ms=0)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def credentials() -> Credentials:
    return Credentials(((USER.encode(), PASSWORD.encode()),), TOKEN.encode())


def app_for(state: Any, db: Any, ledger: Any = None, **kw: Any) -> Any:
    return create_app(Stores.of(state, db, ledger), credentials(), **kw)


def write(store: Store, kind: str, records: list[dict], validated: bool = False) -> None:
    good, bad = documents.split_records(kind, records)
    assert not bad, bad
    store.write(kind, good, validated=validated)


def seed(db: Any, r: Any, n_trades: int = 30) -> None:
    """One record of every kind, `n_trades` trades (three per ms), a watermark, gaps, VWAP and
    candles from trades."""
    store = Store(db, r, SETTINGS)
    for kind, records in one_of_each().items():
        write(store, kind, records)
    write(store, "trades", [trade(i, ts=T0 + i // 3) for i in range(10, 10 + n_trades)])
    r.hset(keys.watermark_key("trades", INST), mapping={"ts": str(T0 + 20), "id": "39"})
    r.hset(keys.watermark_key("tickers", INST), mapping={"ts": str(T0), "id": ""})
    record_gap(r, Gap("trades", INST, T0 + 3, T0 + 5, "reconnect"), "feeder-t", T0, atomic=True)
    g2 = record_gap(
        r, Gap("trades", INST, T0 + 7, T0 + 9, "seq_gap"), "feeder-t", T0 + 1, atomic=True
    )
    r.hset(keys.gap_key(g2.id), mapping={"status": "unrepairable", "reason": "REST has no data"})
    r.zrem(keys.GAPS_OPEN, g2.id)
    record_gap(r, Gap("books", "ETH-USDT", T0, T0 + 1, "reconnect"), "feeder-t", T0, atomic=True)
    for i in range(5):
        ts = T0 + 1000 * i
        db[keys.VWAP_COLLECTION].insert_one(
            {
                "_id": f"{INST}:{ts}",
                "instId": INST,
                "ts": ts,
                "vwap": f"35000.{i}",
                "window_ms": 300_000,
                "n": 10 + i,
                "validated": i < 2,
                "dt": datetime.fromtimestamp(ts / 1000, tz=UTC),
            }
        )
    r.hset(
        keys.vwap_key(INST),
        mapping={
            "vwap": "35000.4",
            "ts": str(T0 + 4000),
            "window_ms": "300000",
            "n": "14",
            "validated": "0",
        },
    )
    r.hset(keys.VALIDATED_UNTIL_KEY, INST, str(T0 + 1000))
    bar_ts = T0 - T0 % 60_000
    db[keys.CANDLES_COLLECTION].insert_one(
        {
            "_id": f"{INST}:1m:{bar_ts}:trades",
            "instId": INST,
            "bar": "1m",
            "ts": str(bar_ts),
            **{"o": "1", "h": "2", "l": "0.5", "c": "1.5", "vol": "3", "volCcy": "4.5"},
            "n": 7,
            "complete": True,
            "final": False,
            "source": "trades",
            "dt": datetime.fromtimestamp(bar_ts / 1000, tz=UTC),
        }
    )
