"""The REST source of backfill (tasks/backfill/source.py): what it pages, with a fake client."""

from __future__ import annotations

from typing import Any

import pytest

from okx.errors import BadReply
from tasks.backfill.plan import Step
from tasks.backfill.source import PENDING_PATH, RestSource
from tests.workers_fixtures import order


class PagedClient:
    """Answers /trade/orders-pending like OKX: newest ordId first, `after` = older than."""

    def __init__(self, rows: list[dict[str, Any]], limit: int) -> None:
        self.rows = sorted(rows, key=lambda r: -int(r["ordId"]))
        self.limit = limit
        self.calls: list[dict[str, str]] = []

    def get(self, path: str, params: dict[str, str], signed: bool = False) -> list[dict]:
        assert path == PENDING_PATH and signed
        self.calls.append(dict(params))
        after = int(params["after"]) if "after" in params else None
        older = [r for r in self.rows if after is None or int(r["ordId"]) < after]
        return older[: min(self.limit, int(params["limit"]))]


def pending_rows(n: int) -> list[dict[str, Any]]:
    return [order(str(1000 + i), 1_700_000_000_000 + i, "live") for i in range(n)]


def test_pending_orders_are_paged_to_the_end_each_order_once():
    # Given more open orders than one page holds
    client = PagedClient(pending_rows(7), limit=3)
    source = RestSource(client, has_credentials=True)
    # When the pending step is paged
    pages = list(source.pages(Step("pending", "SPOT"), None))
    # Then every open order comes back once, each page in ordId order, the last page empty
    got = [r["ordId"] for p in pages for r in p.records]
    assert sorted(got) == [str(1000 + i) for i in range(7)] and len(set(got)) == 7
    for p in pages:
        ids = [int(r["ordId"]) for r in p.records]
        assert ids == sorted(ids)
    assert pages[-1].records == [] and pages[-1].cursor is None
    assert client.calls[0]["instType"] == "SPOT" and "after" not in client.calls[0]
    assert all("after" in c for c in client.calls[1:])


def test_pending_orders_resume_from_a_saved_cursor():
    client = PagedClient(pending_rows(5), limit=2)
    source = RestSource(client, has_credentials=True)
    pages = list(source.pages(Step("pending", "SPOT"), "1003"))
    assert client.calls[0]["after"] == "1003"
    assert sorted(r["ordId"] for p in pages for r in p.records) == ["1000", "1001", "1002"]


def test_a_malformed_pending_row_is_rejected_not_stored():
    bad = pending_rows(1)[0] | {"uTime": "soon"}
    source = RestSource(PagedClient([bad], limit=3), has_credentials=True)
    with pytest.raises(BadReply, match="uTime"):
        list(source.pages(Step("pending", "SPOT"), None))
