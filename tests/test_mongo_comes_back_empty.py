"""A MongoDB that comes back empty (its data lost) gets its indexes again from a running worker
process, through the production client (tasks/clients.py, pymongo), not only at the process's
first batch: the unique keys, time indexes and the books TTL would otherwise be gone for good."""

from __future__ import annotations

import pytest

from core import settings
from core.settings import WorkerSettings
from localrun.mongo_server import MongoServer
from tasks import clients
from tasks.writers.indexes import indexes
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.mongodb]


def index_keys(db, coll: str) -> list[list[str]]:
    return [[k for k, _ in i["key"]] for i in db[coll].index_information().values()]


def all_indexes_there(db) -> bool:
    for coll, models in indexes(books_retention_s=3600).items():
        have = index_keys(db, coll)
        if any([k for k, _ in m.document["key"].items()] not in have for m in models):
            return False
    return True


@pytest.fixture
def own_server(tmp_path):
    server = MongoServer(workdir=str(tmp_path)).start()
    settings.use(
        WorkerSettings(
            mongodb_uri=server.uri, mongodb_db="okex", mongo_timeout_ms=500, books_retention_s=3600
        )
    )
    clients.install()
    clients.close()
    yield server
    clients.close()
    settings.use(None)
    server.stop()


def test_indexes_come_back_after_the_server_comes_back_empty(own_server):
    db = clients.mongo_db()  # the first use creates them
    assert all_indexes_there(db)
    db["trades"].insert_one({"_id": "BTC-USDT:1", "instId": "BTC-USDT", "tradeId": "1"})

    own_server.wipe()  # stopped, data gone, back on the same port

    def writes_and_indexes_again():
        try:
            db = clients.mongo_db()  # what every batch calls first
            db["trades"].insert_one({"_id": "BTC-USDT:2", "instId": "BTC-USDT", "tradeId": "2"})
        except Exception:  # noqa: BLE001 - the client's reconnect, polled until it is back
            pass
        return all_indexes_there(clients.mongo_client()["okex"])

    wait_for(writes_and_indexes_again, 20, interval=0.2, what="indexes recreated after the wipe")
    db = clients.mongo_client()["okex"]
    assert db["trades"].find_one({"_id": "BTC-USDT:1"}) is None  # it did come back empty
    assert ["dt"] in index_keys(db, "books")  # the TTL index too
