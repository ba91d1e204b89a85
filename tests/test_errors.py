"""The one error tree: every exception class of the production packages derives from
CollectorError; callers (the repair runner) decide by class; the REST client turns OKX's codes
and HTTP statuses into those classes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import core.errors as errors
from core.errors import (
    AuthFailed,
    BadBatch,
    BadRecord,
    BadReply,
    BadRequest,
    BookInvalid,
    CollectorError,
    ConfigError,
    NetworkError,
    NoCredentials,
    PlanError,
    ProtocolError,
    RateLimited,
    Rejected,
    RestError,
    Unavailable,
)
from okx.rest.client import classify, error_class, http_error_class
from tasks.backfill.repair import Repairer
from tests.test_backfill_repair import FakeSource, T, env, new_gap  # noqa: F401 - env: fixture
from tests.test_rest_client import client, scripted
from tests.test_rest_client import okx as okx_reply

PACKAGES = ("okx", "core", "collector", "tasks")
# Exceptions that never leave their module, on purpose outside the tree (see each docstring).
PRIVATE = {"okx.parse._Bad"}


def production_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a production package (imported module by module)."""
    found = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, name + ".")
            if not info.name.endswith("__main__")
        ]
        for module in modules:
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [cls for qual, cls in sorted(found.items()) if qual not in PRIVATE]


def test_every_exception_of_the_project_is_under_collector_error():
    classes = production_exceptions()
    assert RestError in classes and PlanError in classes and ProtocolError in classes
    outside = [
        f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, CollectorError)
    ]
    assert outside == []


def test_the_tree_is_importable_from_core_errors_and_drawn_there():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, CollectorError)
        assert name in errors.__doc__  # the module docstring draws every class


def test_the_tree_walked_from_the_root_reaches_every_class_of_core_errors():
    seen, todo = set(), [CollectorError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(cls.__subclasses__())
    assert {getattr(errors, name) for name in errors.__all__} <= seen


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (RestError, RuntimeError),
        (BookInvalid, RuntimeError),
        (ConfigError, ValueError),
        (PlanError, ValueError),
        (BadBatch, ValueError),
        (BadRecord, ValueError),
    ],
)
def test_old_builtin_bases_are_kept_for_existing_except_clauses(cls, builtin):
    assert issubclass(cls, builtin)


def test_old_homes_still_export_the_classes():
    from core.contract import BadBatch as contract_bad_batch
    from okx.book import BookInvalid as book_invalid
    from okx.rest.client import RateLimited as client_rate_limited
    from okx.rest.client import RestError as client_rest_error
    from okx.ws.frames import ProtocolError as frames_protocol_error
    from tasks.backfill.plan import PlanError as plan_plan_error
    from tasks.backfill.source import NoCredentials as source_no_credentials
    from tasks.documents import BadRecord as documents_bad_record

    assert (
        contract_bad_batch,
        book_invalid,
        client_rate_limited,
        client_rest_error,
        frames_protocol_error,
        plan_plan_error,
        source_no_credentials,
        documents_bad_record,
    ) == (
        BadBatch,
        BookInvalid,
        RateLimited,
        RestError,
        ProtocolError,
        PlanError,
        NoCredentials,
        BadRecord,
    )


def test_retryable_is_a_property_of_the_class():
    assert RateLimited.retryable and Unavailable.retryable and NetworkError.retryable
    assert not any(
        c.retryable for c in (RestError, Rejected, BadRequest, AuthFailed, BadReply, NoCredentials)
    )


# ----- the repair runner decides by class ---------------------------------------------------


@pytest.mark.parametrize(
    "error, status",
    [
        (BadRequest("OKX 51001: Instrument ID doesn't exist", "51001"), "unrepairable"),
        # a RestError whose code merely looks like 51xxx is not a rejection: the class decides
        (RestError("OKX 51001: spelled by hand", "51001"), "released"),
        (AuthFailed("OKX 50113: Invalid Sign", "50113"), "released"),  # a fixed key can fill it
        (NoCredentials("fills repair needs OKX credentials"), "released"),
        (RateLimited("OKX 50011", "50011"), "released"),
        (Unavailable("HTTP 503", "503"), "released"),
        (BadReply("history-trades: page does not advance the cursor"), "released"),
    ],
)
def test_repair_classifies_failures_by_class(env, error, status):  # noqa: F811 - the fixture
    _, _, ledger, store = env
    gid = new_gap(ledger)
    res = Repairer(ledger, FakeSource(fail_after_pages=0, error=error), store, clock=lambda: T).run(
        gid
    )
    assert res.status == status
    if status == "unrepairable":
        assert ledger.get(gid)["reason"].startswith("OKX rejected")


# ----- the REST client maps OKX's answers to classes ----------------------------------------


@pytest.mark.parametrize(
    "code, cls",
    [
        ("0", None),
        ("50011", RateLimited),
        ("50061", RateLimited),
        ("50001", Unavailable),
        ("50013", Unavailable),
        ("50026", Unavailable),
        ("50100", AuthFailed),
        ("50113", AuthFailed),
        ("51000", BadRequest),
        ("51001", BadRequest),
        ("59999", Rejected),
        ("50000", Rejected),
    ],
)
def test_okx_codes_map_to_classes(code, cls):
    assert error_class(code) is cls
    if cls is not None:
        assert classify(code) != "ok"


@pytest.mark.parametrize(
    "status, cls",
    [
        (429, RateLimited),
        (500, Unavailable),
        (502, Unavailable),
        (503, Unavailable),
        (401, AuthFailed),
        (403, AuthFailed),
        (400, Rejected),
        (404, Rejected),
        (302, BadReply),
    ],
)
def test_http_statuses_map_to_classes(status, cls):
    assert http_error_class(status) is cls


@pytest.mark.parametrize(
    "reply, cls, code",
    [
        (okx_reply("51001", "Instrument ID doesn't exist"), BadRequest, "51001"),
        (okx_reply("50113", "Invalid Sign", 401), AuthFailed, "50113"),
        (okx_reply("58350", "something OKX added later"), Rejected, "58350"),
        ((401, b"<html>unauthorized</html>"), AuthFailed, "401"),
        ((404, b"<html>not found</html>"), Rejected, "404"),
        ((200, b"not json"), BadReply, None),
        ((200, b'{"data": []}'), BadReply, None),
    ],
)
def test_the_client_raises_the_class_at_once_for_what_retrying_cannot_fix(reply, cls, code):
    with scripted(reply) as (url, seen):
        c, sleeps = client(url)
        with pytest.raises(cls) as info:
            c.get("/api/v5/market/history-trades", {"instId": "X"})
    assert type(info.value) is cls and info.value.code == code
    assert len(seen) == 1 and sleeps == []


@pytest.mark.parametrize(
    "reply, cls",
    [
        (okx_reply("50011", "Too Many Requests", 429), RateLimited),
        ((429, b""), RateLimited),
        ((503, b"busy"), Unavailable),
        (okx_reply("50013", "System busy"), Unavailable),
    ],
)
def test_transient_failures_end_in_their_class_after_the_retries(reply, cls):
    with scripted(reply) as (url, seen):
        c, sleeps = client(url, max_retries=2)
        with pytest.raises(cls) as info:
            c.get("/api/v5/market/history-trades", {"instId": "X"})
    assert type(info.value) is cls and len(seen) == 3 and sleeps == [0.5, 1]


def test_a_final_rate_limit_says_when_to_come_back():
    from okx.rest.ratelimit import RateLimits

    limits = RateLimits(factor=1.0, limits={"/market/history-trades": (20, 60.0)})
    with scripted(okx_reply("50011", "Too Many Requests", 429)) as (url, seen):
        c, _ = client(url, max_retries=0, limits=limits)
        with pytest.raises(RateLimited) as info:
            c.get("/api/v5/market/history-trades")
    assert info.value.retry_after is not None and 50 < info.value.retry_after <= 60


def test_a_connection_failure_is_a_network_error_after_the_retries():
    with scripted(("close", b"")) as (url, seen):
        c, sleeps = client(url, max_retries=1)
        with pytest.raises(NetworkError):
            c.get("/api/v5/market/history-trades")
    assert len(seen) == 2 and sleeps == [0.5]


def test_a_signed_request_without_credentials_is_an_auth_failure():
    from okx.rest.client import RestClient

    with pytest.raises(AuthFailed, match="credentials"):
        RestClient("http://127.0.0.1:9", limits=False).get("/api/v5/account/balance", signed=True)


def test_endpoint_parsers_raise_bad_reply():
    from okx.rest import endpoints

    with pytest.raises(BadReply):
        endpoints.as_int("12a", "tradeId")
    with pytest.raises(BadReply):
        endpoints.book_payload({"asks": "x", "bids": []}, "BTC-USDT", 5)
