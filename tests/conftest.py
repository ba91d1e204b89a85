"""Shared fixtures. Real services are started by the harness; under CI a missing one is a failure."""

from __future__ import annotations

import os
import uuid

import pytest

from localrun.mongo_server import MongoServer, MongoServerError
from localrun.redis_server import RedisNotFound, RedisServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Fixtures shared by several test modules (sim_factory: okxsim instances on free ports).
pytest_plugins = ["tests.feeder_fixtures"]


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    server = RedisServer()
    try:
        server.start()
    except RedisNotFound as exc:
        if IN_CI:
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session server, flushed before each test so tests never see each other's keys."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


# A real MongoDB given at session start (MONGODB_URI=mongodb://...) replaces the wire-protocol
# server for `mongodb_uri`; otherwise the harness starts nx-27017 (localrun/mongo_server.py).
EXTERNAL_MONGODB_URI = os.environ.get("MONGODB_URI", "")
if not EXTERNAL_MONGODB_URI.startswith(("mongodb://", "mongodb+srv://")):
    EXTERNAL_MONGODB_URI = ""


def with_database(uri: str, name: str) -> str:
    """`uri` with its database path replaced by `name` (options kept)."""
    scheme, _, rest = uri.partition("://")
    hosts, _, tail = rest.partition("/")
    options = tail.partition("?")[2]
    return f"{scheme}://{hosts}/{name}" + (f"?{options}" if options else "")


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    """A MongoDB wire-protocol server (nx-27017) on a free loopback port for the whole session.
    Tests that stop, wipe or proxy it must start it again before they end."""
    server = MongoServer(workdir=str(tmp_path_factory.mktemp("mongo")))
    try:
        server.start()
    except MongoServerError as exc:
        if IN_CI:
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def mongodb_uri(request, monkeypatch):
    """`mongodb://host:port/<fresh db>`: a database of its own for this test, dropped afterwards.
    MONGODB_URI and MONGODB_DB (the variable core/settings.py reads the name from) are set for
    the test, so in-process settings and child processes use it."""
    from pymongo import MongoClient

    from core import settings

    base = EXTERNAL_MONGODB_URI or request.getfixturevalue("mongo_server").uri
    name = f"okex_test_{uuid.uuid4().hex[:10]}"
    uri = with_database(base, name)
    monkeypatch.setenv("MONGODB_URI", uri)
    monkeypatch.setenv("MONGODB_DB", name)
    monkeypatch.delenv("MONGO_CLIENT_FACTORY", raising=False)
    settings.use(None)
    yield uri
    settings.use(None)
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(name)
    finally:
        client.close()
