"""What every endpoint needs from the app: the stores and checked instIds (the auth check is
the AuthGate middleware, web/auth.py).

The dependencies are `async def` on purpose: they touch no socket (the instrument list is
cached), and an async dependency runs on the event loop instead of costing a threadpool hop.
The endpoints that read Redis or MongoDB through the blocking clients are plain `def`, so FastAPI
runs them in its threadpool and those clients never stall the loop; the latest-state endpoints
are `async def` over the asyncio client (and mostly answered before routing: web/lean_state.py).
"""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from web.auth import CHALLENGE
from web.params import ApiError, inst_id_shape
from web.stores import Stores


async def stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


async def inst_id(request: Request) -> str:
    """The path's instId: well formed (else 400) and one we collect (else 404)."""
    raw: str = request.path_params["instId"]
    await check_inst_id(request, raw)
    return raw


async def check_inst_id(request: Request, raw: str) -> Stores:
    """`inst_id` called directly (the hot endpoints skip the dependency machinery); returns
    the stores."""
    inst_id_shape(raw)
    stores: Stores = request.app.state.stores
    instruments = stores.instruments
    if instruments.stale(raw):
        await run_in_threadpool(instruments.refresh)  # SCANs: never on the event loop
    if raw not in instruments.known():
        raise ApiError(404, f"unknown instId {raw!r}: no data collected for it")
    return stores


WWW_AUTHENTICATE = {"WWW-Authenticate": CHALLENGE}

# Module-level dependency markers (one object each, shared by every endpoint's signature)
STORES = Depends(stores)
INST_ID = Depends(inst_id)
