"""Auth: everything under /api/v1 but health needs Flower's credentials (HTTP Basic) or the API
token (Bearer); refusals are 401 with WWW-Authenticate; no secret in any response or log line."""

from __future__ import annotations

import base64
import logging

import fakeredis
import mongomock
import pytest
from fastapi.testclient import TestClient

from core.settings import load_web
from tests.web_fixtures import BEARER, INST, PASSWORD, TOKEN, USER, basic, seed
from web.app import create_app
from web.auth import Credentials
from web.stores import Stores

PROTECTED = [
    "/api/v1/instruments",
    f"/api/v1/ticker/{INST}",
    f"/api/v1/trades/{INST}",
    "/api/v1/balances",
    "/api/v1/orders/history",
    "/api/v1/gaps",
    f"/api/v1/coverage/{INST}",
]


@pytest.fixture
def stores():
    r = fakeredis.FakeRedis(decode_responses=True)
    db = mongomock.MongoClient()["okex"]
    seed(db, r)
    return Stores.of(r, db)


def client_for(stores, env):
    return TestClient(create_app(stores, Credentials.from_settings(load_web(env))))


ENV = {"WEB_USER": USER, "WEB_PASSWORD": PASSWORD, "WEB_API_TOKEN": TOKEN}


@pytest.mark.parametrize("path", PROTECTED)
def test_no_credentials_is_401_with_a_challenge(stores, path):
    resp = client_for(stores, ENV).get(path)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "Bearer" in resp.headers["WWW-Authenticate"]
    assert "missing" in resp.json()["error"]


@pytest.mark.parametrize(
    "header",
    [
        basic(USER, PASSWORD + "x"),
        basic(USER + "x", PASSWORD),
        basic(USER, ""),
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": f"{TOKEN}"},
    ],
)
def test_wrong_credentials_are_401(stores, header):
    resp = client_for(stores, ENV).get(f"/api/v1/ticker/{INST}", headers=header)
    assert resp.status_code == 401 and "wrong" in resp.json()["error"]


def test_basic_and_token_both_open_the_api(stores):
    c = client_for(stores, ENV)
    for header in (basic(), BEARER, {"Authorization": f"bearer {TOKEN}"}):
        assert c.get(f"/api/v1/ticker/{INST}", headers=header).status_code == 200


def test_every_flower_basic_auth_pair_is_accepted(stores):
    c = client_for(stores, {"FLOWER_BASIC_AUTH": "a:pw-one,b:pw:two"})
    assert c.get("/api/v1/gaps", headers=basic("a", "pw-one")).status_code == 200
    assert c.get("/api/v1/gaps", headers=basic("b", "pw:two")).status_code == 200
    assert c.get("/api/v1/gaps", headers=basic("a", "pw:two")).status_code == 401
    assert c.get("/api/v1/gaps", headers={"Authorization": "Bearer "}).status_code == 401


def test_no_token_configured_means_no_bearer_login(stores):
    c = client_for(stores, {"WEB_USER": USER, "WEB_PASSWORD": PASSWORD})
    assert c.get("/api/v1/gaps", headers={"Authorization": "Bearer "}).status_code == 401
    assert c.get("/api/v1/gaps", headers={"Authorization": "Bearer"}).status_code == 401


def test_health_is_open(stores):
    assert client_for(stores, ENV).get("/api/v1/health").status_code in (200, 503)


def test_web_no_auth_opens_the_api_explicitly(stores):
    assert client_for(stores, {"WEB_NO_AUTH": "1"}).get("/api/v1/gaps").status_code == 200


def test_no_secret_in_responses_headers_or_logs(stores, caplog):
    caplog.set_level(logging.DEBUG)
    c = client_for(stores, ENV)
    texts = []
    wrong = basic(USER, PASSWORD[:-1])
    for path in [*PROTECTED, "/api/v1/health", "/openapi.json", "/docs", "/api/v1/nope"]:
        for header in ({}, wrong, basic(), BEARER, {"Authorization": f"Bearer {TOKEN}0"}):
            resp = c.get(path, headers=header)
            assert resp.status_code < 500 or path.endswith("health")
            texts.append(resp.text + str(dict(resp.headers)))
    texts += [rec.getMessage() for rec in caplog.records]
    secret_bits = [PASSWORD, TOKEN, TOKEN[:-1], PASSWORD[:-1], wrong["Authorization"].split()[1]]
    for text in texts:
        for bit in secret_bits:
            assert bit not in text
    assert any("refused" in rec.getMessage() for rec in caplog.records)  # refusals are logged
    creds = Credentials.from_settings(load_web(ENV))
    assert PASSWORD not in repr(creds) and TOKEN not in repr(creds)
    assert TOKEN not in repr(load_web(ENV)) and PASSWORD not in repr(load_web(ENV))


def test_refusals_are_counted(stores):
    app = create_app(stores, Credentials.from_settings(load_web(ENV)))
    c = TestClient(app)
    c.get("/api/v1/gaps")
    c.get("/api/v1/gaps", headers=basic(USER, "nope"))
    assert app.state.counters["auth_refused"] == 2 and app.state.counters["http_401"] == 2
