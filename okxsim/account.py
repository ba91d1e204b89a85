"""The simulated trading account and its bot: orders placed, amended, cancelled and filled
against the simulated market, deterministically per seed. Pure: it records events, the
publisher (account_pub.py) pushes them and REST reads them. The records themselves, field by
field as OKX documents them, are built in account_records.py."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from .account_records import (
    MAKER_FEE,
    MARGIN_INSTS,
    START_BALANCES,
    TAKER_FEE,
    Order,
    account_record,
    balance_detail_record,
    dstr,
    order_record,
    position_record,
)
from .clock import SimClock
from .config import SimConfig
from .market import Market


class Account:
    def __init__(self, cfg: SimConfig, markets: dict[str, Market], clock: SimClock) -> None:
        self.cfg = cfg
        self.markets = markets
        self.clock = clock
        self.rng = random.Random(f"{cfg.seed}:bot")
        now = clock.now_ms()
        self.balances: dict[str, Decimal] = {c: Decimal(v) for c, v in START_BALANCES.items()}
        self.frozen: dict[str, Decimal] = {c: Decimal(0) for c in START_BALANCES}
        self.bal_utime: dict[str, int] = {c: now for c in START_BALANCES}
        self.positions: dict[str, dict] = {}  # instId -> position record (MARGIN, net)
        self.live: dict[str, Order] = {}  # ordId -> open order
        self.done: list[dict] = []  # final order states, in completion order
        self.order_events: list[dict] = []  # every order event ever pushed (truth)
        self.fills: list[dict] = []  # every fill (trade/fills shape)
        self._ord_seq = 1000 + self.rng.randrange(1000)
        self._bill_seq = 5000 + self.rng.randrange(1000)
        self._req_seq = 0
        # bot_interval_s is simulated time; ticks come every tick_ms of real time
        self.every = (
            max(1, round(cfg.bot_interval_s * 1000 / (cfg.tick_ms * cfg.clock_speed)))
            if cfg.bot_interval_s > 0
            else 0
        )
        # pending pushes for the publisher
        self.pending_orders: list[dict] = []
        self.pending_bp: list[dict] = []  # balance_and_position events
        self.changed_ccys: set[str] = set()
        self.changed_pos: set[str] = set()

    # ------------------------------------------------------------ bot
    def before_tick(self, tick: int, t0: int, t1: int, now_mono: float) -> None:
        if not self.every or tick % self.every:
            return
        rng = self.rng
        r = rng.random()
        if len(self.live) < 2 or r < 0.45:
            m = self.markets[rng.choice(sorted(self.markets))]
            if m.paused_until > now_mono:
                return
            self._place(m, t1)
        elif r < 0.75:
            self._amend(self.live[rng.choice(sorted(self.live))], t1)
        else:
            self._cancel(self.live[rng.choice(sorted(self.live))], t1)

    def _place(self, m: Market, ts: int) -> None:
        rng = self.rng
        is_buy = rng.random() < 0.5
        margin = m.inst_id in MARGIN_INSTS and rng.random() < 0.5
        bb, ba = m.book.bbo()
        if bb is None or ba is None:
            return
        unit = m.unit
        qty = max(1, int(unit * (0.2 + rng.random())))
        kind = rng.random()
        if kind < 0.25:
            ord_type, px_units = "market", None
        elif kind < 0.4:  # marketable limit: taker, may rest
            ord_type, px_units = "limit", (ba + 2 if is_buy else bb - 2)
        else:  # passive limit near the touch
            ord_type = "limit"
            off = rng.randrange(0, 4)
            px_units = bb - off if is_buy else ba + off
            if px_units <= 0:
                return
        sz = Decimal(m.fsz(qty))
        px = Decimal(m.fpx(px_units)) if px_units is not None else None
        if px is not None and not self._freeze(m, is_buy, sz, px, margin, +1):
            return
        if px is None:  # market: check funds, freeze nothing
            need = sz * Decimal(m.fpx(ba)) * 2 if is_buy else sz
            ccy = m.spec.quote if is_buy else m.spec.base
            if (
                not margin
                and self.balances.get(ccy, Decimal(0)) - self.frozen.get(ccy, Decimal(0)) < need
            ):
                return
        self._ord_seq += 1
        ord_id = str(700_000_000_000_000_000 + self._ord_seq * 7919)
        rec = order_record(
            m, ord_id, self._ord_seq, ord_type, is_buy, margin, px, sz, Decimal(m.fpx(ba)), ts
        )
        o = Order(rec, px, sz, is_buy, m, margin)
        self.live[ord_id] = o
        self._emit(o)
        # crossing part executes at once as taker against the public book
        limit = px_units if ord_type == "limit" else None
        if ord_type == "market" or (is_buy and px_units >= ba) or (not is_buy and px_units <= bb):
            fills = m.take(is_buy, qty, ts, limit)
            for f in fills:
                self._fill(o, Decimal(m.fpx(f[1])), Decimal(m.fsz(f[2])), str(f[0]), ts, "T")
            if ord_type == "market" and o.rec["ordId"] in self.live:
                self._finish(o, "filled" if o.rec["accFillSz"] != "0" else "canceled", ts)

    def _freeze(
        self, m: Market, is_buy: bool, sz: Decimal, px: Decimal, margin: bool, sign: int
    ) -> bool:
        ccy = m.spec.quote if is_buy else m.spec.base
        amt = (sz * px if is_buy else sz) * (1 if not margin else Decimal("0.34"))
        if sign > 0 and self.balances.get(ccy, Decimal(0)) - self.frozen.get(ccy, Decimal(0)) < amt:
            return False
        self.frozen[ccy] = self.frozen.get(ccy, Decimal(0)) + sign * amt
        if self.frozen[ccy] < 0:
            self.frozen[ccy] = Decimal(0)
        self.changed_ccys.add(ccy)
        return True

    def _amend(self, o: Order, ts: int) -> None:
        if o.px is None:
            return
        m = o.market
        step = Decimal(m.spec.tick_sz) * self.rng.randrange(1, 4)
        new_px = o.px - step if o.is_buy else o.px + step
        if new_px <= 0:
            return
        self._freeze(m, o.is_buy, o.remaining, o.px, o.margin, -1)
        o.px = new_px
        self._freeze(m, o.is_buy, o.remaining, o.px, o.margin, +1)
        self._req_seq += 1
        o.rec.update(
            {
                "px": dstr(new_px),
                "amendResult": "0",
                "reqId": f"amend{self._req_seq}",
                "amendSource": "1",
                "uTime": str(ts),
                "fillSz": "0",
                "fillPx": "",
                "tradeId": "",
                "fillTime": "",
                "fillFee": "0",
                "fillFeeCcy": "",
                "fillPnl": "0",
                "execType": "",
                "lastPx": m.fpx(m.last_px),
            }
        )
        self._emit(o)
        o.rec.update({"amendResult": "", "reqId": "", "amendSource": ""})

    def _cancel(self, o: Order, ts: int) -> None:
        # One bot cancel in ten ends as OKX's market-maker-protection cancel, so the terminal
        # state `mmp_canceled` is on the wire too; chosen from the order number, not the bot's
        # Random, so the seed's sequence of actions stays what it was.
        mmp = int(o.rec["clOrdId"][3:]) % 10 == 7
        self._finish(o, "mmp_canceled" if mmp else "canceled", ts)

    def _finish(self, o: Order, state: str, ts: int) -> None:
        self.live.pop(o.rec["ordId"], None)
        if o.remaining > 0 and o.px is not None:
            self._freeze(o.market, o.is_buy, o.remaining, o.px, o.margin, -1)
        reason = {
            "canceled": ("1", "Order canceled by user"),
            "mmp_canceled": ("20", "Order canceled by market maker protection"),
        }
        source, why = reason.get(state, ("", ""))
        o.rec.update(
            {
                "state": state,
                "uTime": str(ts),
                "fillSz": "0",
                "fillPx": "",
                "tradeId": "",
                "fillTime": "",
                "fillFee": "0",
                "fillFeeCcy": "",
                "fillPnl": "0",
                "execType": "",
                "cancelSource": source,
                "cancelSourceReason": why,
            }
        )
        self._emit(o)
        self.done.append(dict(o.rec))

    # ------------------------------------------------------------ fills
    def on_market_fills(self, m: Market, fills: list[tuple]) -> None:
        """Resting bot orders fill when public trades reach their price (maker fills)."""
        for o in [o for o in self.live.values() if o.market is m and o.px is not None]:
            px_units = m.spec.px_units(dstr(o.px))
            for f in fills:
                if o.remaining <= 0:
                    break
                if f[0] <= int(o.rec["tradeId"] or 0):
                    continue  # its own taker fills
                crossed = (
                    (f[3] == "sell" and f[1] <= px_units)
                    if o.is_buy
                    else (f[3] == "buy" and f[1] >= px_units)
                )
                if crossed:
                    sz = min(o.remaining, Decimal(m.fsz(f[2])))
                    self._fill(o, o.px, sz, str(f[0]), f[4], "M")

    def _fill(
        self, o: Order, px: Decimal, sz: Decimal, trade_id: str, ts: int, exec_type: str
    ) -> None:
        m, rec = o.market, o.rec
        base, quote = m.spec.base, m.spec.quote
        fee_rate = TAKER_FEE if exec_type == "T" else MAKER_FEE
        if o.px is not None:
            self._freeze(m, o.is_buy, sz, o.px, o.margin, -1)
        fee_ccy = base if o.is_buy else quote
        fee = -(sz * fee_rate if o.is_buy else sz * px * fee_rate)
        fee = fee.quantize(Decimal(1).scaleb(-12)).normalize()
        pnl = Decimal(0)
        if o.margin:
            pnl = self._position_fill(o, px, sz, trade_id, ts)
            self.balances[quote] += pnl
            self.balances[fee_ccy] += fee
            self.changed_ccys.update((quote, fee_ccy))
        else:
            if o.is_buy:
                self.balances[base] = self.balances.get(base, Decimal(0)) + sz + fee
                self.balances[quote] -= sz * px
            else:
                self.balances[base] -= sz
                self.balances[quote] = self.balances.get(quote, Decimal(0)) + sz * px + fee
            self.changed_ccys.update((base, quote))
        for c in self.changed_ccys:
            self.bal_utime[c] = ts
        acc = Decimal(rec["accFillSz"]) + sz
        avg = ((Decimal(rec["avgPx"] or 0) * Decimal(rec["accFillSz"])) + px * sz) / acc
        o.remaining -= sz
        state = "filled" if o.remaining <= 0 else "partially_filled"
        notional = (sz * px * self.usd_px(quote)).quantize(Decimal("1e-8")).normalize()
        rec.update(
            {
                "fillNotionalUsd": dstr(notional),
                "fillPnl": dstr(pnl),
                "fillMarkPx": dstr(px) if o.margin else "",
                "lastPx": dstr(px),
                "fillIdxPx": dstr(px) if o.margin else "",
            }
        )
        rec.update(
            {
                "fillPx": dstr(px),
                "fillSz": dstr(sz),
                "tradeId": trade_id,
                "fillTime": str(ts),
                "fillFee": dstr(fee),
                "fillFeeCcy": fee_ccy,
                "execType": exec_type,
                "accFillSz": dstr(acc),
                "avgPx": dstr(avg.quantize(Decimal(1).scaleb(-m.spec.px_dp - 4)).normalize()),
                "fee": dstr(Decimal(rec["fee"]) + fee),
                "feeCcy": fee_ccy,
                "pnl": dstr(Decimal(rec["pnl"]) + pnl),
                "state": state,
                "uTime": str(ts),
            }
        )
        self._bill_seq += 1
        self.fills.append(
            {
                "instType": rec["instType"],
                "instId": m.inst_id,
                "tradeId": trade_id,
                "ordId": rec["ordId"],
                "clOrdId": rec["clOrdId"],
                "billId": str(900_000_000 + self._bill_seq),
                "subType": "1" if o.is_buy else "2",
                "tag": "",
                "fillPx": dstr(px),
                "fillSz": dstr(sz),
                "fillIdxPx": "",
                "fillPnl": dstr(pnl),
                "side": rec["side"],
                "posSide": rec["posSide"],
                "execType": exec_type,
                "feeCcy": fee_ccy,
                "fee": dstr(fee),
                "ts": str(ts),
                "fillTime": str(ts),
            }
        )
        self._emit(o)
        self.pending_bp.append(
            {
                "ts": ts,
                "tradeId": trade_id,
                "instId": m.inst_id,
                "ccys": {base, quote},
                "pos": m.inst_id if o.margin else None,
            }
        )
        if state == "filled":
            self.live.pop(rec["ordId"], None)
            self.done.append(dict(rec))

    def _position_fill(self, o: Order, px: Decimal, sz: Decimal, trade_id: str, ts: int) -> Decimal:
        m = o.market
        p = self.positions.get(m.inst_id)
        if p is None:
            p = self.positions[m.inst_id] = position_record(m, len(self.positions), ts)
        pos = Decimal(p["pos"])
        avg = Decimal(p["avgPx"] or 0)
        signed = sz if o.is_buy else -sz
        pnl = Decimal(0)
        if pos == 0 or (pos > 0) == (signed > 0):
            new = pos + signed
            avg = (avg * abs(pos) + px * sz) / abs(new)
        else:
            closing = min(abs(pos), sz)
            pnl = (px - avg) * closing * (1 if pos > 0 else -1)
            new = pos + signed
            if new != 0 and (new > 0) != (pos > 0):
                avg = px
        p.update(
            {
                "pos": dstr(new),
                "availPos": dstr(abs(new)),
                "avgPx": dstr(avg.quantize(Decimal(1).scaleb(-m.spec.px_dp - 4)).normalize())
                if new
                else "",
                "realizedPnl": dstr(Decimal(p["realizedPnl"]) + pnl),
                "tradeId": trade_id,
                "uTime": str(ts),
                "pTime": str(ts),
            }
        )
        self.mark_position(m.inst_id)
        self.changed_pos.add(m.inst_id)
        return pnl

    def mark_position(self, inst_id: str) -> None:
        p = self.positions[inst_id]
        m = self.markets[inst_id]
        last = Decimal(m.fpx(m.last_px))
        pos = Decimal(p["pos"])
        upl = (last - Decimal(p["avgPx"] or 0)) * pos if pos else Decimal(0)
        upl_s = dstr(upl.quantize(Decimal("1e-8")).normalize())
        p.update(
            {
                "markPx": dstr(last),
                "last": dstr(last),
                "upl": upl_s,
                "uplLastPx": upl_s,
                "notionalUsd": dstr((abs(pos) * last).quantize(Decimal("1e-8")).normalize()),
            }
        )

    def _emit(self, o: Order) -> None:
        ev = dict(o.rec)
        self.order_events.append(ev)
        self.pending_orders.append(ev)

    # ------------------------------------------------------------ views
    def usd_px(self, ccy: str) -> Decimal:
        if ccy in ("USDT", "USDC"):
            return Decimal(1)
        m = self.markets.get(f"{ccy}-USDT") or self.markets.get(f"{ccy}-USDC")
        return Decimal(m.fpx(m.last_px)) if m else Decimal(0)

    def balance_detail(self, ccy: str) -> dict:
        cash = self.balances[ccy]
        frozen = self.frozen.get(ccy, Decimal(0))
        avail = cash - frozen
        eq_usd = dstr((cash * self.usd_px(ccy)).quantize(Decimal("1e-8")).normalize())
        return balance_detail_record(ccy, cash, frozen, avail, eq_usd, self.bal_utime[ccy])

    def balance_record(self, ccys: Any = None, now: int | None = None) -> dict:
        names = [
            c for c in sorted(self.balances) if self.balances[c] != 0 and (not ccys or c in ccys)
        ]
        details = [self.balance_detail(c) for c in names]
        total = sum((Decimal(d["eqUsd"]) for d in details), Decimal(0))
        frozen = sum((self.frozen.get(c, Decimal(0)) * self.usd_px(c) for c in names), Decimal(0))
        total_s = dstr(total.quantize(Decimal("1e-8")).normalize())
        return account_record(now or self.clock.now_ms(), total_s, frozen, details)

    def open_positions(self) -> list[dict]:
        out = []
        for inst in sorted(self.positions):
            if Decimal(self.positions[inst]["pos"]) != 0:
                self.mark_position(inst)
                out.append(dict(self.positions[inst]))
        return out
