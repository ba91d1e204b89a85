"""Signing (WebSocket login and REST headers) and subscription planning."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from okx import channels
from okx.signing import Credentials, iso_ms, request_path, rest_headers, ws_login_message
from okx.ws.subscriptions import MAX_ARGS_BYTES, RequestIds, plan, requests

CREDS = Credentials(
    api_key="985d5b66-57ce-40fb-b714-afc0b9787083", secret="SECRETSECRET", passphrase="pass phrase"
)


def expected_sign(message: str) -> str:
    return base64.b64encode(
        hmac.new(b"SECRETSECRET", message.encode(), hashlib.sha256).digest()
    ).decode()


def test_ws_login_uses_seconds_and_the_verify_path():
    msg = orjson.loads(ws_login_message(CREDS, now_s=1704876947.789))
    (arg,) = msg["args"]
    assert msg["op"] == "login"
    assert arg["timestamp"] == "1704876947"
    assert arg["sign"] == expected_sign("1704876947GET/users/self/verify")
    assert (arg["apiKey"], arg["passphrase"]) == (CREDS.api_key, "pass phrase")


def test_every_login_gets_a_fresh_timestamp():
    first = orjson.loads(ws_login_message(CREDS, now_s=1000))["args"][0]
    later = orjson.loads(ws_login_message(CREDS, now_s=1031))["args"][0]
    assert first["timestamp"] != later["timestamp"] and first["sign"] != later["sign"]


def test_iso_timestamp_has_milliseconds():
    assert iso_ms(1607418537.715) == "2020-12-08T09:08:57.715Z"
    assert iso_ms(1607418537.0) == "2020-12-08T09:08:57.000Z"


def test_rest_get_signs_the_query_string():
    path = request_path("/api/v5/account/balance", {"ccy": "BTC,ETH"})
    assert path == "/api/v5/account/balance?ccy=BTC%2CETH"
    headers = rest_headers(CREDS, "get", path, "", now_s=1607418537.715, demo=True)
    assert headers["OK-ACCESS-TIMESTAMP"] == "2020-12-08T09:08:57.715Z"
    assert headers["OK-ACCESS-SIGN"] == expected_sign("2020-12-08T09:08:57.715ZGET" + path)
    assert headers["x-simulated-trading"] == "1"
    assert headers["OK-ACCESS-PASSPHRASE"] == "pass phrase"


def test_rest_post_signs_the_body():
    body = '{"instId":"BTC-USDT"}'
    headers = rest_headers(CREDS, "POST", "/api/v5/trade/order", body, now_s=1607418537.715)
    assert headers["OK-ACCESS-SIGN"] == expected_sign(
        "2020-12-08T09:08:57.715ZPOST/api/v5/trade/order" + body
    )
    assert "x-simulated-trading" not in headers


def test_public_rest_has_no_auth_headers():
    assert rest_headers(None, "GET", "/api/v5/market/books", "", now_s=0) == {
        "Content-Type": "application/json"
    }


def test_credentials_never_show_their_secrets():
    text = repr(CREDS) + str(CREDS) + f"{CREDS}"
    assert "SECRETSECRET" not in text and "pass phrase" not in text
    assert CREDS.api_key not in text


def test_plan_places_channels_on_their_endpoints():
    p = plan(
        ["books", "trades-all", "candle1m", "orders", "balance_and_position", "tickers"],
        ["BTC-USDT", "ETH-USDT"],
    )
    assert p.args["public"] == [
        {"channel": "books", "instId": "BTC-USDT"},
        {"channel": "books", "instId": "ETH-USDT"},
        {"channel": "tickers", "instId": "BTC-USDT"},
        {"channel": "tickers", "instId": "ETH-USDT"},
    ]
    assert {a["channel"] for a in p.args["business"]} == {"trades-all", "candle1m"}
    assert p.args["private"] == [
        {"channel": "orders", "instType": "ANY"},
        {"channel": "balance_and_position"},
    ]
    assert p.login == {"public": False, "business": False, "private": True}


def test_tbt_books_need_login_on_public():
    assert plan(["books-l2-tbt"], ["BTC-USDT"]).login["public"] is True


@pytest.mark.parametrize("bad", ["candle7m", "book", "mark-price"])
def test_plan_rejects_unknown_channels(bad):
    with pytest.raises(ValueError, match=bad):
        plan([bad], ["BTC-USDT"])


def test_endpoint_facts():
    assert channels.endpoint_for("candle1Dutc") == "business"
    assert channels.endpoint_for("trades") == "public"
    assert channels.endpoint_for("positions") == "private"


def test_requests_batch_under_count_and_size_limits():
    ids = RequestIds("s")
    args = [{"channel": "books", "instId": f"INST{i}-USDT"} for i in range(250)]
    out = list(requests("subscribe", args, ids, per_request=100))
    assert [len(a) for _, a, _ in out] == [100, 100, 50]
    assert [rid for rid, _, _ in out] == ["s1", "s2", "s3"]
    for rid, batch, text in out:
        msg = orjson.loads(text)
        assert msg == {"id": rid, "op": "subscribe", "args": batch}
    # Huge args: the 64 KB limit splits before the count does.
    fat = [{"channel": "books", "instId": "X" * 2000 + str(i)} for i in range(100)]
    for _, batch, _ in requests("subscribe", fat, ids, per_request=100):
        assert len(orjson.dumps(batch)) <= MAX_ARGS_BYTES


def test_request_ids_are_valid_okx_ids():
    ids = RequestIds("abc")
    rid = ids.next()
    assert rid.isalnum() and 1 <= len(rid) <= 32
    with pytest.raises(ValueError):
        RequestIds("no-dash")
