"""Feeder configuration: defaults, environment, TOML, and clear errors before connecting."""
from __future__ import annotations

import pytest

from core.settings import (
    DEFAULT_PRIVATE_CHANNELS, DEMO_WS_URL, PROD_REST_URL, PROD_WS_URL, ConfigError, load,
)

CREDS = {"OKX_API_KEY": "k" * 12, "OKX_API_SECRET": "s3cr3t-value", "OKX_API_PASSPHRASE": "pp"}


def test_production_defaults_are_port_less_okx_endpoints():
    s = load(env={})
    assert (s.ws_url, s.rest_url) == (PROD_WS_URL, PROD_REST_URL)
    assert ":8443" not in s.ws_url
    assert s.credentials is None
    assert not s.private_channels


def test_environment_values():
    s = load(env={"OKX_INSTRUMENTS": "BTC-USDT, ETH-USDT,BTC-USDT", "OKX_CHANNELS": "trades,books5",
                  "REDIS_URL": "rediss://h:1/0", "FEEDER_BATCH_MAX": "250", "OKX_PING_AFTER": "15"})
    assert s.instruments == ("BTC-USDT", "ETH-USDT")
    assert s.channels == ("trades", "books5")
    assert (s.redis_url, s.batch_max, s.ping_after_s) == ("rediss://h:1/0", 250, 15.0)


def test_credentials_add_private_channels_by_default_and_stay_hidden():
    s = load(env=CREDS)
    assert set(DEFAULT_PRIVATE_CHANNELS) <= set(s.channels)
    assert "s3cr3t-value" not in repr(s) and "pp'" not in repr(s)


def test_demo_switches_the_websocket_host():
    assert load(env={"OKX_DEMO": "1"}).ws_url == DEMO_WS_URL
    assert load(env={"OKX_DEMO": "1", "OKX_WS_URL": "ws://127.0.0.1:9"}).ws_url == "ws://127.0.0.1:9"


@pytest.mark.parametrize("env, message", [
    ({"OKX_CHANNELS": "orders"}, "needs a login"),
    ({"OKX_CHANNELS": "books-l2-tbt"}, "needs a login"),
    ({"OKX_CHANNELS": "candle7m"}, "unknown candle bar"),
    ({"OKX_CHANNELS": "bookz"}, "unknown channel"),
    ({"OKX_API_KEY": "k"}, "OKX_API_SECRET, OKX_API_PASSPHRASE not set"),
    ({"OKX_WS_URL": "wss://ws.okx.com/ws/v5/public"}, "base URL only"),
    ({"OKX_WS_URL": "https://ws.okx.com"}, "ws:// or wss://"),
    ({"OKX_PING_AFTER": "30"}, "between 0 and 30"),
    ({"OKX_PING_AFTER": "soon"}, "must be a number"),
    ({"OKX_DEMO": "maybe"}, "true or false"),
    ({"FEEDER_HEALTHY_AFTER": "0"}, "FEEDER_HEALTHY_AFTER must be positive"),
    ({"FEEDER_LINGER_MAX_MS": "5000"}, "FEEDER_LINGER_MAX_MS must be between 0 and 1000"),
    ({"OKX_INSTRUMENTS": " , "}, "OKX_INSTRUMENTS is empty"),
    ({**CREDS, "OKX_CHANNELS": "books,books-l2-tbt"}, "64004"),
])
def test_bad_configuration_is_a_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env)


def test_toml_file_and_precedence(tmp_path):
    path = tmp_path / "feeder.toml"
    path.write_text('instruments = ["SOL-USDT"]\nchannels = ["trades"]\nbatch_max = 100\n')
    s = load(env={"OKX_CONFIG": str(path), "FEEDER_BATCH_MAX": "300"})
    assert s.instruments == ("SOL-USDT",) and s.channels == ("trades",)
    assert s.batch_max == 300  # the environment wins over the file
    assert load(env={}, config_path=str(path), batch_max=7, buffer_max=70).batch_max == 7


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("instruments = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(env={}, config_path=str(bad))
    typo = tmp_path / "typo.toml"
    typo.write_text('instrumnets = ["X"]\n')
    with pytest.raises(ConfigError, match="unknown settings.*instrumnets"):
        load(env={}, config_path=str(typo))
    with pytest.raises(ConfigError, match="cannot read"):
        load(env={}, config_path=str(tmp_path / "missing.toml"))


def test_tls_redis_urls_accept_a_self_signed_certificate_unless_the_url_says_otherwise():
    from core.redis_clients import tls_kwargs

    assert tls_kwargs("rediss://:pw@host:6380/0") == {"ssl_cert_reqs": None}
    assert tls_kwargs("rediss://host:6380/0?ssl_cert_reqs=required") == {}
    assert tls_kwargs("redis://host:6379/0") == {}
