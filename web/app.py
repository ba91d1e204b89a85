"""The read API's FastAPI application: `create_app(stores, credentials, ...)`.

Routers by concern under /api/v1: health (open), then, behind the AuthGate middleware (web/auth.py),
current state (Redis), history (MongoDB), completeness (the gap ledger). OpenAPI at /openapi.json, docs at
/docs. Every refusal is `{"error": "<one line>"}` with its 4xx status, counted per status in
`app.state.counters`; a bad query parameter FastAPI itself refuses is a 400 of the same shape.
An unexpected exception is logged with its type and answered 500 `{"error": "internal error"}`:
never a traceback, a URL or a credential in a response.

The dashboard (web/dashboard.py, the dashboard helper's) adds its router where marked below;
Flower, when `flower` is given, is proxied under /flower (web/flower.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from web import (
    metrics,
    routes_completeness,
    routes_feeders,
    routes_health,
    routes_history,
    routes_state,
)
from web.auth import AuthGate, Credentials
from web.cached_reads import cached_reads
from web.deps import WWW_AUTHENTICATE
from web.lean_state import LeanState
from web.params import ApiError
from web.responses import Json
from web.stores import Stores

log = logging.getLogger("web.app")

API_PREFIX = "/api/v1"


def _refusal(request: Request, status: int, message: str) -> Json:
    request.app.state.counters[f"http_{status}"] += 1
    headers = WWW_AUTHENTICATE if status == 401 else None
    return Json({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Json:
        return _refusal(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Json:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        message = f"{where or 'request'}: {first.get('msg', 'invalid')}"
        log.info("refused %s %s: %s", request.method, request.url.path, message)
        return _refusal(request, 400, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Json:
        request.app.state.counters["http_500"] += 1
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return Json({"error": "internal error"}, status_code=500)


def create_app(
    stores: Stores,
    credentials: Credentials,
    *,
    worker_probe: Any = None,
    flower: Any = None,
    lean: bool = True,
    state_cache_max: int = 0,
) -> FastAPI:
    """The app over `stores`; `worker_probe` (web.health.WorkerProbe) and `flower`
    (web.flower.FlowerChild) are started and stopped with it when given. `lean=False` leaves
    out the lean latest-state path (web/lean_state.py): the tests compare the two.
    `state_cache_max` > 0 puts the latest-state cache (web/state_cache.py) under the lean path
    when the state Redis client can have a push channel (`python -m web`: WEB_STATE_CACHE_MAX)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker_probe is not None:
            worker_probe.start()
        if flower is not None:
            await flower.start()
        try:
            yield
        finally:
            if flower is not None:
                await flower.stop()
            if worker_probe is not None:
                worker_probe.stop()
            if reads is not None:  # the tracking connection, on this loop
                await reads.client.aclose()

    app = FastAPI(
        title="okx-collector read API",
        version="1",
        default_response_class=Json,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry asks the global providers (and the environment) on
        # every request; nothing here configures OpenTelemetry, and the check cost ~20 us a
        # request on the latest-state path (docs/read-api.md)
        telemetry={"tracing": False, "metrics": False, "logs": False},
        description="Current state (Redis), history (MongoDB), completeness and health of the "
        "OKX collector. See docs/read-api.md.",
    )
    app.state.stores = stores
    app.state.credentials = credentials
    app.state.worker_probe = worker_probe
    app.state.flower = flower
    app.state.counters = Counter()
    reads = cached_reads(stores.state_async, state_cache_max) if lean else None
    app.state.state_cache = None if reads is None else reads.cache
    app.state.cached_reads = reads
    _install_error_handlers(app)

    app.include_router(routes_health.router, prefix=API_PREFIX)
    # each router straight onto the app (no nesting: fewer routing layers per request); the
    # latest-state router first, as the busiest
    for module in (routes_state, routes_history, routes_completeness, routes_feeders):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(metrics.router)  # /metrics (Prometheus), behind the credentials too
    # the latest-state GETs answered before routing (web/lean_state.py), behind the auth check:
    # add_middleware puts the last added outermost, so AuthGate runs first
    if lean:
        app.add_middleware(LeanState, stores=stores, counters=app.state.counters, reads=reads)
    # everything under /api/ but health needs credentials (web/auth.py), and /metrics
    app.add_middleware(
        AuthGate,
        credentials=credentials,
        counters=app.state.counters,
        protected=("/api/", metrics.PATH),
    )
    from web.dashboard import router as dashboard_router  # the page at / and /static/ (public)

    app.include_router(dashboard_router)
    if flower is not None:
        from web.flower import proxy_router

        app.include_router(proxy_router(flower))
    return app
