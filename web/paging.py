"""The opaque cursor of the paged endpoints: where the last page ended, and for which query.

A page is sorted by (sort key, _id), both ascending; the sort key is a time in ms (or a gap id),
the `_id` breaks ties, so records sharing a time are neither skipped nor repeated across pages.
The cursor holds (fingerprint of the query, last sort key, last _id), as url-safe base64 of
JSON. It is opaque to callers, not secret: a forged cursor can only move the position inside the
caller's own query. The fingerprint covers every parameter that changes the result set (path,
instId, bar, source, range, filters), not `limit`: the next page may be asked with another limit,
but a cursor used with a changed query is a 400, never a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from web.params import ApiError


@dataclass(frozen=True, slots=True)
class Position:
    """The last record of a page: its sort key and its _id."""

    key: int
    id: str


def fingerprint(path: str, query: Mapping[str, Any]) -> str:
    """A short digest of the query (`None` values and the paging parameters left out)."""
    shown = {k: str(v) for k, v in sorted(query.items()) if v is not None}
    digest = hashlib.blake2b(orjson.dumps([path, shown]), digest_size=8)
    return digest.hexdigest()


def encode(query_fp: str, pos: Position) -> str:
    raw = orjson.dumps([query_fp, pos.key, pos.id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str | None, query_fp: str) -> Position | None:
    """The position in `cursor` (None: no cursor, the first page); ApiError 400 if the cursor
    is not one of ours or belongs to another query."""
    if not cursor:
        return None
    try:
        padded = cursor.encode() + b"=" * (-len(cursor) % 4)
        fp, key, last_id = orjson.loads(base64.urlsafe_b64decode(padded))
        if type(fp) is not str or type(key) is not int or type(last_id) is not str:
            raise ValueError("wrong types")
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ApiError(400, "cursor is not a cursor of this API (copy `next` as it is)") from None
    if fp != query_fp:
        raise ApiError(
            400, "cursor belongs to another query: keep every parameter but limit unchanged"
        )
    return Position(key, last_id)
