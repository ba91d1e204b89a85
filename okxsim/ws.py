"""The WebSocket endpoints /ws/v5/{public,business,private}: ops, acks, errors, keepalive."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from .appkey import EXCHANGE
from .conn import Conn
from .context import ExchangeContext
from .hub import BUSINESS_CHANNELS, PRIVATE_CHANNELS, PUBLIC_CHANNELS, TBT_BOOKS
from .signing import check_ws_login

ENDPOINTS = ("public", "business", "private")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
OPS_PER_HOUR = 480


def _wrong(channel: Any, inst_id: Any) -> tuple[str, str]:
    return (
        "60018",
        f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use "
        "the correct URL, channel and parameters referring to API document.",
    )


def check_arg(ex: ExchangeContext, conn: Conn, arg: Any) -> tuple[str, str] | None:
    """None if the subscription arg is acceptable on this connection, else (code, msg)."""
    if not isinstance(arg, dict):
        return "60013", "Invalid args"
    if "uly" in arg:
        return "64000", "Invalid request: uly is not supported, use instFamily"
    channel, inst_id = arg.get("channel"), arg.get("instId")
    if not isinstance(channel, str) or not channel:
        return "60013", "Invalid args"
    ep = conn.endpoint
    if channel in PRIVATE_CHANNELS:
        if ep != "private":
            return _wrong(channel, inst_id)
        if not conn.logged_in:
            return "60011", "Please log in"
        if channel in ("orders", "positions") and not arg.get("instType"):
            return "60013", "Invalid args"
        return None
    if channel in TBT_BOOKS:
        if ep != "public":
            return _wrong(channel, inst_id)
        if not conn.logged_in:
            return "60011", "Please log in"
        return "64003", "Your trading fee tier doesn't meet the requirement to access this channel"
    if channel in PUBLIC_CHANNELS:
        if ep == "business":
            return "64002", (
                'This channel is not supported by "business" URL. Please use "/public" URL'
            )
        if ep != "public":
            return _wrong(channel, inst_id)
    elif channel in BUSINESS_CHANNELS:
        if ep == "public" and channel.startswith("candle"):
            return "64001", (
                "This channel has been migrated to the '/business' URL. Please "
                "subscribe using the new URL."
            )
        if ep != "business":
            return _wrong(channel, inst_id)
    else:
        return _wrong(channel, inst_id)
    if inst_id not in ex.markets:
        return _wrong(channel, inst_id)
    return None


class Session:
    """Handles the text frames of one connection (no awaits: replies are pushed directly)."""

    def __init__(self, ex: ExchangeContext, conn: Conn) -> None:
        self.ex = ex
        self.conn = conn
        self.op_times: list[float] = []

    def error(self, code: str, msg: str, req_id: Any = None) -> None:
        obj: dict = {}
        if req_id is not None:
            obj["id"] = req_id
        obj.update({"event": "error", "code": code, "msg": msg, "connId": self.conn.conn_id})
        self.conn.send_obj(obj)

    def on_text(self, text: str) -> None:
        conn = self.conn
        if text == "ping":
            conn.send_text("pong")
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.error("60012", f"Invalid request: {text[:200]}")
            return
        if not isinstance(req, dict):
            self.error("60012", f"Invalid request: {text[:200]}")
            return
        req_id = req.get("id")
        if req_id is not None and (not isinstance(req_id, str) or not _ID_RE.match(req_id)):
            self.error("60012", f"Invalid request: invalid id {req_id!r}")
            return
        op, args = req.get("op"), req.get("args")
        if op not in ("subscribe", "unsubscribe", "login"):
            self.error("60019", f"Invalid OP: {op}", req_id)
            return
        now = time.monotonic()
        self.op_times = [t for t in self.op_times if t > now - 3600]
        if len(self.op_times) >= OPS_PER_HOUR:
            self.error("60014", "Requests too frequent.", req_id)
            return
        self.op_times.append(now)
        if not isinstance(args, list) or not args:
            self.error("60013", "Invalid args", req_id)
            return
        if op == "login":
            self.login(args[0], req_id)
        elif op == "subscribe":
            for arg in args:
                self.subscribe(arg, req_id)
        else:
            for arg in args:
                self.unsubscribe(arg, req_id)

    def login(self, arg: Any, req_id: Any) -> None:
        ex, conn = self.ex, self.conn
        if conn.logged_in:
            self.error("60031", "The WS login is repeated", req_id)
            return
        if ex.faults.login_rejected():
            code, msg = "60009", "Login failed."
        elif not isinstance(arg, dict):
            code, msg = "60012", "Invalid request"
        else:
            cfg = ex.cfg
            code, msg = check_ws_login(
                arg, cfg.api_key, cfg.api_secret, cfg.passphrase, ex.clock.wall_s()
            )
        if code != "0":
            self.error(code, msg, req_id)
            ex.close_later(conn, 4001, "Login failed.")
            return
        conn.logged_in = True
        obj: dict = {"id": req_id} if req_id is not None else {}
        obj.update({"event": "login", "code": "0", "msg": "", "connId": conn.conn_id})
        conn.send_obj(obj)

    def _ack(self, event: str, arg: dict, req_id: Any) -> None:
        obj: dict = {"id": req_id} if req_id is not None else {}
        obj.update({"event": event, "arg": arg, "connId": self.conn.conn_id})
        self.conn.send_obj(obj)

    def subscribe(self, arg: Any, req_id: Any) -> None:
        err = check_arg(self.ex, self.conn, arg)
        if err is not None:
            self.error(err[0], err[1], req_id)
            return
        self._ack("subscribe", arg, req_id)
        channel = arg["channel"]
        if channel in PRIVATE_CHANNELS:
            self.conn.private_args[channel] = arg
            self.conn.unsubscribed_since = None
            if self.ex.account is not None:
                self.ex.account_pub.on_subscribe(self.conn, channel, arg)
        else:
            self.ex.hub.subscribe(self.conn, channel, arg["instId"], self.ex.clock.now_ms())

    def unsubscribe(self, arg: Any, req_id: Any) -> None:
        if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
            self.error("60013", "Invalid args", req_id)
            return
        channel = arg["channel"]
        if channel in PRIVATE_CHANNELS:
            self.conn.private_args.pop(channel, None)
        else:
            self.ex.hub.unsubscribe(self.conn, channel, arg.get("instId"))
        if not self.conn.subs and not self.conn.private_args:
            self.conn.unsubscribed_since = time.monotonic()
        self._ack("unsubscribe", arg, req_id)


async def handle(request: web.Request) -> web.StreamResponse:
    ex: ExchangeContext = request.app[EXCHANGE]
    endpoint = request.match_info["endpoint"]
    if endpoint not in ENDPOINTS:
        raise web.HTTPNotFound()
    ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = Conn(ws, request.transport, ex.new_conn_id(), endpoint, ex.stats)
    ex.hub.conns.add(conn)
    ex.stats.connections_total += 1
    session = Session(ex, conn)
    try:
        async for msg in ws:
            conn.last_recv = time.monotonic()
            if conn.stalled():
                continue  # a stalled server answers nothing, not even ping
            if msg.type == WSMsgType.TEXT:
                session.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                session.error("60012", "Invalid request: binary frame")
    finally:
        conn.closed = True
        ex.hub.remove(conn)
    return ws
