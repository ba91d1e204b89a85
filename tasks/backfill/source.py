"""Where backfill gets its data: the OKX REST client (okx/rest/client.py) and the paging fetchers
(okx/rest/endpoints.py), behind one small object so tests can hand in a fake.

`pages(step, resume)` yields history.Page objects for the streaming steps of a plan (trades,
candles, orders, pending, fills); `get(...)` is the raw client for the snapshots.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from typing import Any

from core.errors import NoCredentials, PlanError
from core.rest_limits import shared_limits
from core.settings import WorkerSettings as Settings
from okx.rest import endpoints as history
from okx.rest import rows
from okx.rest.client import RestClient
from okx.rest.endpoints import Page
from tasks.backfill.plan import Step

PENDING_PATH = "/api/v5/trade/orders-pending"
PRIVATE_STEPS = ("orders", "pending", "fills", "account")


_clients: dict[tuple, RestClient] = {}
_lock = threading.Lock()


def make_client(settings: Settings) -> RestClient:
    """One client per process and configuration. Its rate limits live in the broker's Redis
    (REDIS_URL), so every worker process, dyno and the feeder share OKX's per-IP / per-user
    budget; without that Redis they fall back to a share of it in-process."""
    key = (
        settings.okx_rest_url,
        settings.okx_demo,
        settings.credentials,
        settings.rest_timeout_s,
        settings.redis_url,
    )
    with _lock:
        client = _clients.get(key)
        if client is None:
            api_key = settings.credentials.api_key if settings.credentials else None
            wanted: dict[str, Any] = {
                "credentials": settings.credentials,
                "demo": settings.okx_demo,
                "timeout": settings.rest_timeout_s,
                "limits": shared_limits(
                    settings.redis_url,
                    api_key=api_key,
                    factor=settings.rest_rate_factor,
                    fallback_share=settings.rest_fallback_share,
                ),
            }
            accepted = inspect.signature(RestClient).parameters
            client = RestClient(
                settings.okx_rest_url, **{k: v for k, v in wanted.items() if k in accepted}
            )
            _clients[key] = client
        return client


class RestSource:
    def __init__(self, client: Any, *, has_credentials: bool) -> None:
        self.client = client
        self.has_credentials = has_credentials

    def need_credentials(self, step: Step) -> None:
        if step.kind in PRIVATE_STEPS and not self.has_credentials:
            raise NoCredentials(
                f"{step.kind} repair needs OKX credentials (OKX_API_KEY, "
                "OKX_API_SECRET, OKX_API_PASSPHRASE)"
            )

    def pages(self, step: Step, resume: str | None) -> Iterator[Page]:
        self.need_credentials(step)
        c = self.client
        if step.kind == "trades":
            return history.trades(
                c,
                step.key,
                lower_id=step.lower_id,
                upper_id=step.upper_id,
                lower_ms=step.start_ms,
                upper_ms=step.end_ms,
                resume=resume,
            )
        if step.kind == "candles":
            start, end = _window(step)
            return history.candles(c, step.key, step.bar, start, end, resume=resume)
        if step.kind == "orders":
            return history.orders(c, step.key, *_window(step), resume=resume)
        if step.kind == "fills":
            return history.fills(c, step.key, *_window(step), resume=resume)
        if step.kind == "pending":
            return self._pending(step.key, resume)
        raise ValueError(f"{step.kind} is not a paged step")

    def _pending(self, inst_type: str, resume: str | None) -> Iterator[Page]:
        """Open orders now (their latest state): what orders-history cannot show yet."""
        cursor = int(resume) if resume and resume.isdigit() else None
        while True:
            params = {"instType": inst_type, "limit": str(history.PAGE_LIMIT)}
            if cursor is not None:
                params["after"] = str(cursor)
            # (not named `rows`: that is the module of row readers used on this very line)
            page = [
                rows.order_payload(r) for r in self.client.get(PENDING_PATH, params, signed=True)
            ]
            if not page:
                yield Page([], None)
                return
            cursor = history.next_cursor([int(r["ordId"]) for r in page], cursor, "orders-pending")
            yield Page(sorted(page, key=lambda r: int(r["ordId"])), str(cursor))

    # ----- snapshots ------------------------------------------------------------------------------
    def balances(self) -> list[dict]:
        self.need_credentials(Step("account", ""))
        return history.balances(self.client)

    def positions(self) -> list[dict]:
        self.need_credentials(Step("account", ""))
        return history.positions(self.client)

    def book(self, inst_id: str) -> dict:
        return history.book(self.client, inst_id)

    def ticker(self, inst_id: str) -> dict:
        return history.ticker(self.client, inst_id)


def rest_source(settings: Settings) -> RestSource:
    return RestSource(make_client(settings), has_credentials=settings.credentials is not None)


def _window(step: Step) -> tuple[int, int]:
    """The time window of a step that pages by time (candles, orders, fills): the planner always
    sets one; a step without it is a planning bug, said as such."""
    if step.start_ms is None or step.end_ms is None:
        raise PlanError(f"{step.kind} step for {step.key!r} has no time window")
    return step.start_ms, step.end_ms
