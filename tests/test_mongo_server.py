"""localrun/mongo_server.py: the wire-protocol server's life cycle as the harness uses it (start on
a free port, data kept across stop/start on the same port, wipe, a clear error when it cannot
start), and the collection-name translation of localrun/mongo_wire_main.py."""

from __future__ import annotations

import socket

import pytest
from pymongo import MongoClient

from localrun.mongo_server import MongoServer, MongoServerError
from localrun.mongo_wire_main import collection_name, table_name

pytestmark = pytest.mark.integration


def client_for(server: MongoServer) -> MongoClient:
    return MongoClient(server.uri, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000)


def test_keyword_collections_get_another_table_and_keep_their_name():
    assert table_name("order") == "order__kw"
    assert table_name("ORDER") == "ORDER__kw"
    assert table_name("trades") == "trades"
    for name in ("order", "group", "select", "trades", "dead_letters"):
        assert collection_name(table_name(name)) == name
    # idempotent: a table name handed back in is not translated twice
    assert table_name(table_name("order")) == "order__kw"
    assert collection_name("books__kw") == "books__kw"  # not a keyword: a name like any other


def test_data_survives_stop_and_start_on_the_same_port_and_wipe_empties_it(tmp_path):
    server = MongoServer(workdir=str(tmp_path)).start()
    try:
        port = server.port
        assert server.uri == f"mongodb://127.0.0.1:{port}"
        client = client_for(server)
        client["okex"]["order"].insert_many([{"_id": f"o{i}", "state": "live"} for i in range(5)])
        server.stop()
        assert not server.ping(timeout_ms=200)
        server.start()
        assert server.port == port
        assert client["okex"]["order"].count_documents({}) == 5  # the same client reconnects
        assert "order" in client["okex"].list_collection_names()
        server.wipe()
        assert server.running() and server.port == port
        assert client["okex"].list_collection_names() == []
        assert client["okex"]["order"].count_documents({}) == 0
        client.close()
    finally:
        server.stop()


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MongoServer(port=taken.getsockname()[1], workdir=str(tmp_path))
        with pytest.raises(MongoServerError) as info:
            server.start(timeout=15)
    assert f"port {server.port}" in str(info.value)
    assert "address already in use" in str(info.value).lower()
    assert not server.running()


def test_ping_is_false_where_nothing_listens(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert MongoServer(port=port, workdir=str(tmp_path)).ping(timeout_ms=200) is False
