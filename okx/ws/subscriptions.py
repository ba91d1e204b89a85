"""Subscription planning: which connection carries which args, and the request frames. Pure.

OKX limits (okx-v5-protocol.md section 2): the args of one request total at most 64 KB; each
subscribe/unsubscribe/login request counts against 480 per hour per connection, so we send few,
large requests. Request ids (1-32 alphanumerics) map errors back to requests, because error
frames carry no arg.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from okx.channels import ENDPOINTS, PRIVATE_CHANNELS, endpoint_for, is_per_instrument, needs_login

MAX_ARGS_BYTES = 64 * 1024
# Well under the 64 KB limit; also keeps one bad arg from failing a huge request.
DEFAULT_ARGS_PER_REQUEST = 100
REQUESTS_PER_HOUR = 480

# One subscription arg, {"channel": "books", "instId": "BTC-USDT"}: string values when we build
# it, a JSON object as received when OKX echoes it back in a frame (Event.arg, Data.arg).
SubscriptionArg = dict[str, Any]
# (channel, instId, instType, instFamily, ccy), None where the arg has no such field.
SubscriptionKey = tuple[str | None, str | None, str | None, str | None, str | None]


def arg_key(arg: SubscriptionArg) -> SubscriptionKey:
    """A hashable identity of a subscription arg, e.g. ("books", "BTC-USDT")."""
    get = arg.get  # once per data frame (the staleness watchdog): one attribute load
    return get("channel"), get("instId"), get("instType"), get("instFamily"), get("ccy")


@dataclass
class Plan:
    """Args per endpoint, and whether each endpoint needs a login first."""

    args: dict[str, list[SubscriptionArg]] = field(
        default_factory=lambda: {e: [] for e in ENDPOINTS}
    )
    login: dict[str, bool] = field(default_factory=lambda: {e: False for e in ENDPOINTS})

    def endpoints(self) -> list[str]:
        return [e for e in ENDPOINTS if self.args[e]]


def plan(
    channels: Iterable[str], instruments: Iterable[str], private_inst_type: str = "ANY"
) -> Plan:
    """Place every (channel, instrument) on its endpoint. Raises ValueError for unknown channels."""
    result = Plan()
    inst_list = list(dict.fromkeys(instruments))
    for channel in dict.fromkeys(channels):
        endpoint = endpoint_for(channel)
        if needs_login(channel):
            result.login[endpoint] = True
        if is_per_instrument(channel):
            result.args[endpoint].extend({"channel": channel, "instId": i} for i in inst_list)
        elif channel in PRIVATE_CHANNELS and channel in ("orders", "positions"):
            result.args[endpoint].append({"channel": channel, "instType": private_inst_type})
        else:
            result.args[endpoint].append({"channel": channel})
    return result


# (request id, its args, the frame text) of one subscribe/unsubscribe request
Request = tuple[str, list[SubscriptionArg], str]


class RequestIds:
    """Short, unique, alphanumeric request ids: prefix + counter."""

    def __init__(self, prefix: str = "r") -> None:
        if not prefix.isalnum() or len(prefix) > 8:
            raise ValueError("request id prefix must be 1-8 alphanumerics")
        self._prefix = prefix
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"


def requests(
    op: str,
    args: list[SubscriptionArg],
    ids: RequestIds,
    per_request: int = DEFAULT_ARGS_PER_REQUEST,
) -> Iterator[Request]:
    """Yield (request id, args, frame text) for `op` ("subscribe"/"unsubscribe"), batching args
    under both the count and OKX's 64 KB size limit."""
    if op not in ("subscribe", "unsubscribe"):
        raise ValueError(f"op must be subscribe or unsubscribe, not {op!r}")
    batch: list[SubscriptionArg] = []
    size = 2
    for arg in args:
        arg_size = len(orjson.dumps(arg)) + 1
        if batch and (len(batch) >= per_request or size + arg_size > MAX_ARGS_BYTES):
            yield _request(op, batch, ids)
            batch, size = [], 2
        batch.append(arg)
        size += arg_size
    if batch:
        yield _request(op, batch, ids)


def _request(op: str, args: list[SubscriptionArg], ids: RequestIds) -> Request:
    rid = ids.next()
    return rid, args, orjson.dumps({"id": rid, "op": op, "args": args}).decode()
