"""What each fault kind does to the running exchange (see docs/okxsim.md, "Faults")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .conn import OP_BINARY, Conn, ws_frame
from .context import ExchangeContext
from .hostile import HostileFault, mutations_for

JUNK_FRAMES = (
    ws_frame(b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"as'),
    ws_frame(b"\x00\xff\xfe junk \x13\x37", OP_BINARY),
    ws_frame(
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":{"tradeId":123,'
        b'"px":null,"sz":[1],"side":7,"ts":true}}'
    ),
    ws_frame(
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":'
        b'"none","bids":[[1,2]],"ts":1,"checksum":"0","prevSeqId":"7","seqId":"8"}]}'
    ),
    ws_frame(b"[1,2,3]"),
)


def _targets(
    ex: ExchangeContext, inst: str | None, endpoints: tuple[str, ...] | None = None
) -> list[Conn]:
    out = []
    for c in ex.hub.conns:
        if c.closed:
            continue
        if endpoints is not None and c.endpoint not in endpoints:
            continue
        if inst is not None and not any(k[1] == inst for k in c.subs):
            continue
        out.append(c)
    return out


def apply_fault(
    ex: ExchangeContext, kind: str, inst: str | None, seconds: float | None, body: dict
) -> dict[str, Any]:
    now = time.monotonic()
    insts = [inst] if inst else list(ex.markets)
    if kind == "drop":
        conns = _targets(ex, inst)
        for c in conns:
            c.abort()
        return {"connections": len(conns)}
    if kind == "stall":
        conns = _targets(ex, inst)
        for c in conns:
            c.stalled_until = now + (seconds if seconds is not None else 5.0)
        return {"connections": len(conns)}
    if kind == "gap":
        ex.faults.gap.update(insts)
        return {"instruments": len(insts)}
    if kind == "corrupt":
        ex.faults.corrupt.update(insts)
        return {"instruments": len(insts)}
    if kind == "malformed":
        conns = _targets(ex, inst)
        for c in conns:
            for f in JUNK_FRAMES:
                c.push(f, "malformed")
        return {"connections": len(conns), "frames": len(JUNK_FRAMES)}
    if kind == "notice":
        conns = _targets(ex, inst, ("public", "private"))
        delay = seconds if seconds is not None else 60.0
        loop = asyncio.get_running_loop()
        for c in conns:
            c.send_obj(
                {
                    "event": "notice",
                    "code": "64008",
                    "msg": "The connection will soon be closed for a service upgrade. "
                    "Please reconnect.",
                    "connId": c.conn_id,
                },
                "notice",
            )
            loop.call_later(delay, ex.close_later, c, 1012, "Service upgrade")
        return {"connections": len(conns)}
    if kind == "reject_login":
        if seconds is not None:
            ex.faults.reject_login_until = now + seconds
        else:
            ex.faults.reject_login_next += int(body.get("count", 1))
        return {}
    if kind == "rate_limit":
        ex.faults.rate_limit_until = now + (seconds if seconds is not None else 5.0)
        return {}
    if kind == "pause":
        for i in insts:
            ex.markets[i].paused_until = now + (seconds if seconds is not None else 5.0)
        return {"instruments": len(insts)}
    if kind == "hostile":
        return _hostile(ex, inst, seconds, body, now)
    raise ValueError(kind)


HOSTILE_DEFAULT_CHANNELS = ("books", "trades", "trades-all", "tickers")


def _hostile(
    ex: ExchangeContext, inst: str | None, seconds: float | None, body: dict, now: float
) -> dict[str, Any]:
    """Start a hostile window (replacing a running one): `every` (default 3: one frame in
    three of the chosen channels gets a broken copy), `channels` (list or comma-separated),
    `seconds` (default 60)."""
    every = body.get("every", 3)
    if type(every) is not int or every < 1:
        raise ValueError("every must be an integer >= 1")
    raw = body.get("channels") or HOSTILE_DEFAULT_CHANNELS
    channels = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(channels, (list, tuple)) or not all(isinstance(c, str) for c in channels):
        raise ValueError("channels must be a list of channel names")
    unknown = [c for c in channels if not mutations_for(c)]
    if unknown:
        raise ValueError(f"hostile has no mutations for {', '.join(unknown)}")
    duration = seconds if seconds is not None else 60.0
    ex.faults.hostile = HostileFault(
        every=every,
        until=now + duration,
        channels=frozenset(channels),
        inst=inst,
        records=ex.faults.hostile_log,
    )
    return {"every": every, "channels": sorted(channels), "seconds": duration}
