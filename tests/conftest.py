"""Shared fixtures. Real services are started by the harness; under CI a missing one is a failure."""

from __future__ import annotations

import os

import pytest

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
