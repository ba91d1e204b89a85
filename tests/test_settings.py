"""Feeder configuration: defaults, environment, TOML, and clear errors before connecting."""

from __future__ import annotations

import pytest

from core.settings import (
    DEFAULT_PRIVATE_CHANNELS,
    DEMO_WS_URL,
    PROD_REST_URL,
    PROD_WS_URL,
    ConfigError,
    load,
)

CREDS = {"OKX_API_KEY": "k" * 12, "OKX_API_SECRET": "s3cr3t-value", "OKX_API_PASSPHRASE": "pp"}


def test_production_defaults_are_port_less_okx_endpoints():
    s = load(env={})
    assert (s.ws_url, s.rest_url) == (PROD_WS_URL, PROD_REST_URL)
    assert ":8443" not in s.ws_url
    assert s.credentials is None
    assert not s.private_channels


def test_environment_values():
    s = load(
        env={
            "OKX_INSTRUMENTS": "BTC-USDT, ETH-USDT,BTC-USDT",
            "OKX_CHANNELS": "trades,books5",
            "REDIS_URL": "rediss://h:1/0",
            "FEEDER_BATCH_MAX": "250",
            "OKX_PING_AFTER": "15",
        }
    )
    assert s.instruments == ("BTC-USDT", "ETH-USDT")
    assert s.channels == ("trades", "books5")
    assert (s.redis_url, s.batch_max, s.ping_after_s) == ("rediss://h:1/0", 250, 15.0)


def test_credentials_add_private_channels_by_default_and_stay_hidden():
    s = load(env=CREDS)
    assert set(DEFAULT_PRIVATE_CHANNELS) <= set(s.channels)
    assert "s3cr3t-value" not in repr(s) and "pp'" not in repr(s)


def test_demo_switches_the_websocket_host():
    assert load(env={"OKX_DEMO": "1"}).ws_url == DEMO_WS_URL
    assert (
        load(env={"OKX_DEMO": "1", "OKX_WS_URL": "ws://127.0.0.1:9"}).ws_url == "ws://127.0.0.1:9"
    )


@pytest.mark.parametrize(
    "env, message",
    [
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
    ],
)
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


# ----- one set of parsers for every process ----------------------------------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from core import config_parsers as p  # noqa: E402
from core.settings import WorkerSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "raw, want",
    [
        ("1", True),
        ("yes", True),
        (" ON ", True),
        (True, True),
        ("0", False),
        ("off", False),
        ("No", False),
    ],
)
def test_one_bool_parser(raw, want):
    assert p.parse_bool("X", raw) is want


@pytest.mark.parametrize(
    "raw, want",
    [("30", 30.0), ("1.5", 1.5), ("250ms", 0.25), ("5m", 300.0), ("2h", 7200.0), (7, 7.0)],
)
def test_durations(raw, want):
    assert p.parse_duration("X", raw) == want


@pytest.mark.parametrize(
    "parse, raw, message",
    [
        (p.parse_bool, "maybe", "X must be true or false"),
        (p.parse_int, "many", "X must be an integer"),
        (p.parse_int, "1.5", "X must be an integer"),
        (p.parse_float, "fast", "X must be a number"),
        (p.parse_duration, "soon", "X must be a number of seconds"),
        (p.parse_share, "0", r"X must be in \(0, 1\]"),
        (p.parse_share, "1.5", r"X must be in \(0, 1\]"),
    ],
)
def test_parser_errors_name_the_variable(parse, raw, message):
    with pytest.raises(ConfigError, match=message):
        parse("X", raw)


def test_lists_are_stripped_and_deduplicated():
    assert p.parse_list("X", " a, b,a,, ") == ("a", "b")
    assert p.parse_list("X", ["a", "a", "c"]) == ("a", "c")


def test_one_credentials_parser_for_both_processes():
    assert p.parse_credentials("", None, " ") is None
    for build in (
        lambda env: load(env=env).credentials,
        lambda env: WorkerSettings.from_env(env).credentials,
    ):
        assert build(CREDS).secret == "s3cr3t-value"
        with pytest.raises(ConfigError, match="OKX_API_SECRET, OKX_API_PASSPHRASE not set"):
            build({"OKX_API_KEY": "k"})


def test_one_redis_default_and_blank_means_default():
    assert load(env={}).redis_url == WorkerSettings.from_env({}).redis_url == p.DEFAULT_REDIS_URL
    assert load(env={"REDIS_URL": ""}).redis_url == p.DEFAULT_REDIS_URL
    assert WorkerSettings.from_env({"REDIS_URL": " "}).redis_url == p.DEFAULT_REDIS_URL


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REDIS_URL": "notaurl"}, "REDIS_URL must start with redis:// or rediss://"),
        ({"REDIS_URL": "redis://:hunter22@host:port/0"}, "REDIS_URL is not a valid URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL has no host"),
        ({"STATE_REDIS_URL": "http://h/1"}, "STATE_REDIS_URL must start with"),
        ({"MONGODB_URI": "notaurl"}, "MONGODB_URI is not a URI"),
        ({"MONGODB_URI": "mysql://u:hunter22@h/db"}, "MONGODB_URI must start with mongodb://"),
        ({"OKX_REST_URL": "openapi.okx.com"}, "OKX_REST_URL must start with http:// or https://"),
        ({"MONGO_CLIENT_FACTORY": "nocolon"}, "MONGO_CLIENT_FACTORY must be"),
        ({"OKX_REST_RATE_FACTOR": "2"}, "OKX_REST_RATE_FACTOR"),
        ({"TRADES_CAP": "many"}, "TRADES_CAP must be an integer"),
    ],
)
def test_worker_url_and_value_errors_are_one_line_without_passwords(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        WorkerSettings.from_env(env)
    text = str(info.value)
    assert "\n" not in text and "hunter22" not in text


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REDIS_URL": "notaurl"}, "REDIS_URL must start with redis://"),
        ({"REDIS_URL": "rediss://:hunter22@h:x/0"}, "REDIS_URL is not a valid URL"),
        ({"OKX_REST_URL": "ftp://x"}, "OKX_REST_URL must start with http:// or https://"),
        ({"OKX_WS_URL": "notaurl"}, "OKX_WS_URL must start with ws:// or wss://"),
        ({"OKX_BOOK_PURE": "perhaps"}, "OKX_BOOK_PURE must be true or false"),
    ],
)
def test_feeder_url_errors_are_one_line_without_passwords(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        load(env=env)
    assert "\n" not in str(info.value) and "hunter22" not in str(info.value)


def test_a_stand_in_mongo_scheme_needs_the_factory_hook():
    env = {"MONGODB_URI": "mongostandin://127.0.0.1:27999"}
    with pytest.raises(ConfigError, match="MONGODB_URI must start with mongodb://"):
        WorkerSettings.from_env(env)
    factory = "localrun.mongo_standin:client_for"
    s = WorkerSettings.from_env({**env, "MONGO_CLIENT_FACTORY": factory})
    assert s.mongo_client_factory == factory


def test_the_mongo_factory_is_resolved_by_name():
    from localrun.mongo_standin import StandinClient
    from tasks.clients import make_mongo_client

    client = make_mongo_client(
        "mongostandin://127.0.0.1:1", 100, "localrun.mongo_standin:client_for"
    )
    assert isinstance(client, StandinClient)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        make_mongo_client("mongodb://h", 100, "no.such.module:f")


def test_timer_defaults_come_from_their_one_definition():
    import inspect

    from collector import status
    from collector.ledger import Ledger
    from core.settings import FEEDER_DEAD_S, HEARTBEAT_EVERY_S, HEARTBEAT_LATE_S
    from okx.ws import session

    s = load(env={})
    assert (s.ping_after_s, s.pong_timeout_s, s.stale_after_s, s.healthy_after_s) == (
        session.PING_AFTER_S,
        session.PONG_TIMEOUT_S,
        session.STALE_AFTER_S,
        session.HEALTHY_AFTER_S,
    )
    assert session.PING_AFTER_S < session.OKX_IDLE_CUTOFF_S
    assert inspect.signature(Ledger).parameters["heartbeat_every"].default == HEARTBEAT_EVERY_S
    assert status.HEARTBEAT_LATE_S == HEARTBEAT_LATE_S > HEARTBEAT_EVERY_S
    assert WorkerSettings.from_env({}).feeder_dead_s == FEEDER_DEAD_S > HEARTBEAT_LATE_S


def test_rest_pacing_settings_are_shared_by_both_processes():
    env = {"OKX_REST_RATE_FACTOR": "0.5", "OKX_REST_FALLBACK_SHARE": "0.1"}
    for s in (load(env=env), WorkerSettings.from_env(env)):
        assert (s.rest_rate_factor, s.rest_fallback_share) == (0.5, 0.1)


def test_repr_hides_url_passwords_in_both_processes():
    env = {"REDIS_URL": "rediss://:hunter22@h:6380/0"}
    assert "hunter22" not in repr(load(env=env))
    assert "hunter22" not in repr(WorkerSettings.from_env(env))


def test_collector_with_a_malformed_redis_url_says_so_in_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "collector"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": "notaurl", "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "REDIS_URL" in lines[0] and "Traceback" not in r.stderr
