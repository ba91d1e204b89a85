"""The MongoDB stand-in's fast unique-index and TTL paths give mongomock's answers, in O(1) a write."""

from __future__ import annotations

import time

import pymongo.errors
import pytest

from localrun.mongo_standin import MongoStandin, StandinClient


@pytest.fixture
def coll():
    server = MongoStandin().start()
    client = StandinClient(server.uri)
    c = client["okex"]["trades"]
    c.create_index([("instId", 1), ("tradeId", 1)], unique=True, name="natural_key")
    yield c
    client.close()
    server.stop()


def test_unique_secondary_index_still_refuses_duplicates(coll):
    coll.insert_one({"_id": "a", "instId": "BTC", "tradeId": "1"})
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        coll.insert_one({"_id": "b", "instId": "BTC", "tradeId": "1"})  # same key, other _id
    with pytest.raises(pymongo.errors.BulkWriteError) as bulk:
        coll.insert_many(
            [
                {"_id": "c", "instId": "BTC", "tradeId": "2"},
                {"_id": "d", "instId": "BTC", "tradeId": "1"},
            ],
            ordered=False,
        )
    assert bulk.value.details["nInserted"] == 1
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [11000]


def test_deleted_or_changed_documents_free_their_key(coll):
    coll.insert_one({"_id": "a", "instId": "BTC", "tradeId": "1"})
    coll.delete_one({"_id": "a"})
    coll.insert_one({"_id": "b", "instId": "BTC", "tradeId": "1"})  # free again
    coll.update_one({"_id": "b"}, {"$set": {"tradeId": "9"}})
    coll.insert_one({"_id": "c", "instId": "BTC", "tradeId": "1"})  # "1" released by the update
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        coll.insert_one({"_id": "d", "instId": "BTC", "tradeId": "9"})  # "9" now taken by b
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        coll.update_one({"_id": "c"}, {"$set": {"tradeId": "9"}})  # an update may not take it
    assert coll.find_one({"_id": "c"})["tradeId"] == "1"  # and was rolled back
    assert coll.count_documents({}) == 2


def test_writes_do_not_slow_down_as_the_collection_grows(coll):
    def batch(start: int) -> float:
        docs = [
            {"_id": f"BTC:{i}", "instId": "BTC", "tradeId": str(i)}
            for i in range(start, start + 200)
        ]
        t = time.perf_counter()
        coll.insert_many(docs, ordered=False)
        return time.perf_counter() - t

    first = min(batch(i * 200) for i in range(3))
    for i in range(3, 40):  # 8,000 documents: mongomock alone took seconds a batch
        batch(i * 200)
    last = min(batch(i * 200) for i in range(40, 43))
    assert coll.count_documents({}) == 43 * 200
    assert last < max(10 * first, 0.2), (first, last)
