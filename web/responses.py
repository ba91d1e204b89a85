"""JSON responses encoded by orjson (FastAPI's ORJSONResponse is deprecated in 0.165).

orjson encodes the API's dicts of strings several times faster than the stdlib encoder, which
matters on the latest-state endpoints (bench/api.py)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class Json(JSONResponse):
    """`Json(content)`, or `Json(None, raw=b"...")` for a body that is already JSON."""

    media_type = "application/json"

    def __init__(
        self, content: Any = None, status_code: int = 200, raw: bytes | None = None, **kw: Any
    ) -> None:
        self._raw = raw
        super().__init__(content, status_code, **kw)

    def render(self, content: Any) -> bytes:
        raw = getattr(self, "_raw", None)
        return raw if raw is not None else orjson.dumps(content)
