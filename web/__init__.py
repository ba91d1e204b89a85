"""The `web` process: the read API (/api/v1), the dashboard (/) and Flower (/flower) on one port.

    app.py          create_app(...): the FastAPI application, its routers and error handlers
    stores.py       the Redis and MongoDB clients, built once per process and handed in
    auth.py         HTTP Basic (Flower's credentials) or Bearer WEB_API_TOKEN, constant-time
    params.py       query parameters: times (ms or ISO-8601), ranges, bars, instIds, limits
    paging.py       the opaque cursor of the paged history endpoints
    history.py      paged range reads over MongoDB (pure filters + one thin reader)
    routes_*.py     one router per concern: state (Redis), history (MongoDB), completeness
                    (the gap ledger), health
    lean_state.py   the latest-state GETs answered before FastAPI's routing (the hot path)
    state_bodies.py their JSON bodies, shared by the lean path and routes_state.py
    resp.py         the lean asyncio Redis client those reads use (one pipelined connection;
                    optionally a RESP3 tracking connection for the cache)
    state_cache.py  the latest-state cache's bookkeeping (CLIENT TRACKING invalidations, pure)
    cached_reads.py the lean path's reads through that cache (marks, PTTL, the channel's PING)
    metrics.py      GET /metrics: the cache's and the lean path's counters (Prometheus)
    flower.py       Flower as a supervised child on a loopback port, proxied under /flower
    __main__.py     `python -m web`: uvicorn on $PORT

docs/read-api.md describes the endpoints, the auth and the paging.
"""
