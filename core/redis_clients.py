"""One rule for every Redis client we build: how to reach a TLS Redis (rediss://).

Heroku's Key-Value Store is TLS-only and presents a self-signed certificate, so a default
rediss:// client fails with "certificate verify failed". Celery's broker connection is configured
for that in celeryconfig.py; every other client (the feeder's ledger, the workers' state client,
`collector status`, the shared REST rate limiter) takes its keyword arguments from here. A URL that
sets `ssl_cert_reqs` itself keeps its own choice.
"""

from __future__ import annotations

from typing import Any


def tls_kwargs(url: str) -> dict[str, Any]:
    """Extra keyword arguments for `redis.Redis.from_url(url, ...)`."""
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        return {"ssl_cert_reqs": None}
    return {}
