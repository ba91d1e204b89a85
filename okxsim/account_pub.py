"""Pushes the account's events on /ws/v5/private: orders, account, positions,
balance_and_position (snapshots on subscribe where OKX sends them, then events)."""

from __future__ import annotations

from typing import Any

from .account_records import dstr
from .conn import Conn
from .context import ExchangeContext


def _matches(arg: dict, rec: dict) -> bool:
    it = arg.get("instType", "ANY")
    if it not in ("ANY", rec.get("instType")):
        return False
    inst = arg.get("instId")
    return not inst or inst == rec.get("instId")


class AccountPublisher:
    def __init__(self, ex: ExchangeContext) -> None:
        self.ex = ex

    def _conns(self, channel: str) -> list[Conn]:
        return [
            c
            for c in self.ex.hub.conns
            if not c.closed and c.logged_in and channel in c.private_args
        ]

    def _bal_data(self, ccys: Any) -> list[dict]:
        acct = self.ex.account
        return [
            {"ccy": c, "cashBal": dstr(acct.balances[c]), "uTime": str(acct.bal_utime[c])}
            for c in sorted(ccys)
            if c in acct.balances
        ]

    @staticmethod
    def _pos_data(p: dict) -> dict:
        keys = (
            "posId",
            "tradeId",
            "instId",
            "instType",
            "mgnMode",
            "posSide",
            "pos",
            "ccy",
            "posCcy",
            "avgPx",
            "uTime",
        )
        d = {k: p.get(k, "") for k in keys}
        d.update({"nonSettleAvgPx": "", "settledPnl": ""})
        return d

    def on_subscribe(self, conn: Conn, channel: str, arg: dict) -> None:
        acct = self.ex.account
        now = self.ex.clock.now_ms()
        if channel == "account":
            ccy = arg.get("ccy")
            conn.send_obj(
                {
                    "arg": arg,
                    "eventType": "snapshot",
                    "curPage": 1,
                    "lastPage": True,
                    "data": [acct.balance_record({ccy} if ccy else None, now)],
                },
                channel,
            )
        elif channel == "positions":
            conn.send_obj(
                {
                    "arg": arg,
                    "eventType": "snapshot",
                    "curPage": 1,
                    "lastPage": True,
                    "data": [p for p in acct.open_positions() if _matches(arg, p)],
                },
                channel,
            )
        elif channel == "balance_and_position":
            conn.send_obj(
                {
                    "arg": {"channel": channel},
                    "data": [
                        {
                            "pTime": str(now),
                            "eventType": "snapshot",
                            "balData": self._bal_data(
                                c for c in acct.balances if acct.balances[c] != 0
                            ),
                            "posData": [self._pos_data(p) for p in acct.open_positions()],
                            "trades": [],
                        }
                    ],
                },
                channel,
            )

    def flush(self, now_ms: int) -> None:
        acct = self.ex.account
        if acct is None:
            return
        if acct.pending_orders:
            for c in self._conns("orders"):
                arg = c.private_args["orders"]
                for ev in acct.pending_orders:
                    if _matches(arg, ev):
                        c.send_obj({"arg": arg, "data": [ev]}, "orders")
        if acct.pending_bp:
            conns = self._conns("balance_and_position")
            for ev in acct.pending_bp if conns else ():
                pos = [self._pos_data(acct.positions[ev["pos"]])] if ev["pos"] else []
                msg = {
                    "arg": {"channel": "balance_and_position"},
                    "data": [
                        {
                            "pTime": str(ev["ts"]),
                            "eventType": "filled",
                            "balData": self._bal_data(ev["ccys"]),
                            "posData": pos,
                            "trades": [{"instId": ev["instId"], "tradeId": ev["tradeId"]}],
                        }
                    ],
                }
                for c in conns:
                    c.send_obj(msg, "balance_and_position")
        if acct.changed_ccys:
            for c in self._conns("account"):
                arg = c.private_args["account"]
                ccys = {arg["ccy"]} & acct.changed_ccys if arg.get("ccy") else acct.changed_ccys
                if ccys:
                    c.send_obj(
                        {
                            "arg": arg,
                            "eventType": "event_update",
                            "data": [acct.balance_record(ccys, now_ms)],
                        },
                        "account",
                    )
        if acct.changed_pos:
            for c in self._conns("positions"):
                arg = c.private_args["positions"]
                data = []
                for inst in sorted(acct.changed_pos):
                    acct.mark_position(inst)
                    if _matches(arg, acct.positions[inst]):
                        data.append(dict(acct.positions[inst]))
                if data:
                    c.send_obj({"arg": arg, "eventType": "event_update", "data": data}, "positions")
        acct.pending_orders.clear()
        acct.pending_bp.clear()
        acct.changed_ccys.clear()
        acct.changed_pos.clear()
