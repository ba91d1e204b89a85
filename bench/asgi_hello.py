"""The floor of an HTTP hop: a bare ASGI endpoint on uvicorn, configured as `python -m web` is.

    python -m bench.asgi_hello PORT

Answers every request `{}` with no routing, no auth and no Redis read. bench/api.py measures
it with the same client, in the same run, beside the latest-state endpoints: what uvicorn and
the socket cost before the API does anything.
"""

from __future__ import annotations

import sys
from typing import Any

HEADERS = [(b"content-length", b"2"), (b"content-type", b"application/json")]


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})


def main() -> int:
    import uvicorn

    from web.__main__ import UVICORN_OPTIONS

    options = {**UVICORN_OPTIONS, "log_level": "warning"}
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
