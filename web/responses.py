"""JSON responses encoded by orjson (FastAPI's ORJSONResponse is deprecated in 0.165).

orjson encodes the API's dicts of strings several times faster than the stdlib encoder, which
matters on the latest-state endpoints (bench/api.py)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class Json(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
