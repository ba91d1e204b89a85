"""Subscriptions and the market publisher: every frame is serialized once, then written to all
subscribers of its (channel, instId) key."""

from __future__ import annotations

import time

import orjson

from . import views
from .candles import BARS
from .checksum import okx_checksum
from .config import SimConfig
from .conn import Conn, ws_frame
from .faults import FaultState
from .hostile import COPY_FIRST
from .market import Market, TickOut
from .stats import Stats

PUBLIC_CHANNELS = {"tickers", "trades", "books", "books5", "bbo-tbt"}
TBT_BOOKS = {"books-l2-tbt", "books50-l2-tbt"}
BUSINESS_CHANNELS = {"trades-all"} | {"candle" + b for b in BARS}
PRIVATE_CHANNELS = {"orders", "account", "positions", "balance_and_position"}


def _frame(obj: dict) -> bytes:
    return ws_frame(orjson.dumps(obj))


class Hub:
    def __init__(
        self, cfg: SimConfig, markets: dict[str, Market], stats: Stats, faults: FaultState
    ) -> None:
        self.cfg = cfg
        self.markets = markets
        self.stats = stats
        self.faults = faults
        self.conns: set[Conn] = set()
        self.subs: dict[tuple, set[Conn]] = {}
        self._last_b5: dict[str, tuple] = {}
        self._last_tick: dict[str, tuple] = {}
        self._last_bbo: dict[str, tuple] = {}
        self.last_ticker: dict[str, dict] = {}  # instId -> the last ticker sent (truth)
        self.heartbeat_ms = int(cfg.heartbeat_s * 1000)
        # While a market step runs, broadcast frames are collected per connection and written
        # with one socket write each when it ends (`uncork`): one system call per connection and
        # step instead of one per frame, as a server writes a burst (and the client reads it).
        self._corked: dict[Conn, list] | None = None

    # ------------------------------------------------------------ subscriptions
    def subscribe(self, conn: Conn, channel: str, inst_id: str, now_ms: int) -> None:
        key = (channel, inst_id)
        self.subs.setdefault(key, set()).add(conn)
        already = key in conn.subs
        conn.subs.add(key)
        conn.unsubscribed_since = None
        if channel == "bbo-tbt":
            self.markets[inst_id].want_bbo = True
        if not already:
            self._initial(conn, channel, self.markets[inst_id], now_ms)

    def unsubscribe(self, conn: Conn, channel: str, inst_id: str) -> None:
        key = (channel, inst_id)
        s = self.subs.get(key)
        if s is not None:
            s.discard(conn)
            if not s:
                del self.subs[key]
                if channel == "bbo-tbt":
                    self.markets[inst_id].want_bbo = False
        conn.subs.discard(key)

    def remove(self, conn: Conn) -> None:
        for channel, inst_id in list(conn.subs):
            self.unsubscribe(conn, channel, inst_id)
        self.conns.discard(conn)

    def _initial(self, conn: Conn, channel: str, m: Market, now_ms: int) -> None:
        """What a new subscriber gets at once: book snapshots, the current ticker and candle."""
        if channel == "books":
            if self.cfg.ws_snapshot:
                conn.push(
                    _frame(
                        self._books_msg(
                            m,
                            "snapshot",
                            m.levels(False, 400),
                            m.levels(True, 400),
                            -1,
                            m.pub_seq,
                            m.book_ts or now_ms,
                        )
                    ),
                    channel,
                )
        elif channel == "books5":
            conn.push(_frame(self._books5_msg(m, m.book_ts or now_ms)), channel)
        elif channel == "bbo-tbt":
            conn.push(
                _frame(
                    self._bbo_msg(
                        m, m.book_ts or now_ms, m.pub_seq, m.top_level(True), m.top_level(False)
                    )
                ),
                channel,
            )
        elif channel == "tickers":
            tick = self.last_ticker[m.inst_id] = views.ticker(m, now_ms)
            conn.push(
                _frame({"arg": {"channel": "tickers", "instId": m.inst_id}, "data": [tick]}),
                channel,
            )
        elif channel.startswith("candle"):
            series = m.candles[channel[6:]]
            series.roll(now_ms, m.last_px)
            conn.push(
                _frame(
                    {
                        "arg": {"channel": channel, "instId": m.inst_id},
                        "data": [views.candle_row(m, series.bars[-1], "0")],
                    }
                ),
                channel,
            )

    # ------------------------------------------------------------ broadcasting
    def send(self, key: tuple, obj: dict) -> None:
        conns = self.subs.get(key)
        if not conns:
            return
        frame = _frame(obj)
        channel = key[0]
        hostile = self.faults.hostile
        if hostile is not None and hostile.wants(channel, key[1], time.monotonic()):
            self._send_hostile(key, obj, frame, conns)
            return
        corked = self._corked
        if corked is not None:
            for c in conns:
                pending = corked.get(c)
                if pending is None:
                    corked[c] = [(frame, channel)]
                else:
                    pending.append((frame, channel))
            return
        for c in tuple(conns):
            c.push(frame, channel)

    def _send_hostile(self, key: tuple, obj: dict, frame: bytes, conns: set[Conn]) -> None:
        """The original frame plus its broken copy (hostile.py), in the order where a collector
        that wrongly accepted the copy would store something wrong. The copy is counted in
        /sim/stats under the channel "hostile", so stats show what was actually written."""
        channel = key[0]
        assert self.faults.hostile is not None
        bad = self.faults.hostile.copy(channel, key[1], obj, len(conns), int(time.time() * 1000))
        pair = [(frame, channel)]
        if bad is not None:
            copy = (ws_frame(bad), "hostile")
            pair = [copy, *pair] if channel in COPY_FIRST else [*pair, copy]
        corked = self._corked
        for c in tuple(conns):
            if corked is not None:
                corked.setdefault(c, []).extend(pair)
            else:
                c.push_many(pair)

    def cork(self) -> None:
        """Collect broadcast frames until `uncork` (one market step)."""
        if self._corked is None:
            self._corked = {}

    def uncork(self) -> None:
        """Write what was collected, one write per connection, in the order it was sent."""
        corked, self._corked = self._corked, None
        if corked:
            for c, frames in corked.items():
                c.push_many(frames)

    # ------------------------------------------------------------ message bodies
    def _books_msg(
        self,
        m: Market,
        action: str,
        asks: list,
        bids: list,
        prev: int,
        seq: int,
        ts: int,
        corrupt: bool = False,
    ) -> dict:
        data: dict = {"asks": asks, "bids": bids, "ts": str(ts)}
        mode = self.cfg.checksum
        if corrupt:
            good = okx_checksum(m.levels(True, 25), m.levels(False, 25))
            data["checksum"] = (good ^ 0x2F5A1C3) or 123456789
        elif mode == "crc":
            data["checksum"] = okx_checksum(m.levels(True, 25), m.levels(False, 25))
        elif mode == "zero":
            data["checksum"] = 0
        data["prevSeqId"] = prev
        data["seqId"] = seq
        return {"arg": {"channel": "books", "instId": m.inst_id}, "action": action, "data": [data]}

    def _books5_msg(self, m: Market, ts: int) -> dict:
        return {
            "arg": {"channel": "books5", "instId": m.inst_id},
            "data": [
                {
                    "asks": m.levels(False, 5),
                    "bids": m.levels(True, 5),
                    "instId": m.inst_id,
                    "ts": str(ts),
                    "seqId": m.pub_seq,
                }
            ],
        }

    @staticmethod
    def _bbo_msg(m: Market, ts: int, seq: int, bid: list, ask: list) -> dict:
        return {
            "arg": {"channel": "bbo-tbt", "instId": m.inst_id},
            "data": [{"asks": ask, "bids": bid, "ts": str(ts), "seqId": seq}],
        }

    # ------------------------------------------------------------ per tick
    def publish_tick(self, m: Market, out: TickOut, now_ms: int) -> None:
        inst = m.inst_id
        subs = self.subs
        if out.bbo and ("bbo-tbt", inst) in subs:
            for ts, seq, bid, ask in out.bbo:
                self.send(("bbo-tbt", inst), self._bbo_msg(m, ts, seq, bid, ask))
        if out.aggs and ("trades", inst) in subs:
            for a in out.aggs:
                self.send(
                    ("trades", inst),
                    {"arg": {"channel": "trades", "instId": inst}, "data": [views.trade_agg(m, a)]},
                )
        if out.fills and ("trades-all", inst) in subs:
            for f in out.fills:
                self.send(
                    ("trades-all", inst),
                    {
                        "arg": {"channel": "trades-all", "instId": inst},
                        "data": [views.trade_all(m, f)],
                    },
                )
        self._publish_books(m, now_ms)
        if ("tickers", inst) in subs:
            b, a = m.book.bids, m.book.asks
            key = (
                b.best(),
                a.best(),
                m.next_trade_id,
                b.levels[b.best()][0] if b.prices else 0,
                a.levels[a.best()][0] if a.prices else 0,
            )
            if key != self._last_tick.get(inst):
                self._last_tick[inst] = key
                tick = self.last_ticker[inst] = views.ticker(m, now_ms)
                self.send(
                    ("tickers", inst),
                    {"arg": {"channel": "tickers", "instId": inst}, "data": [tick]},
                )

    def _publish_books(self, m: Market, now_ms: int) -> None:
        inst = m.inst_id
        bch, ach = m.book.take_changes()
        heartbeat = False
        if bch or ach:
            prev = m.pub_seq
            if self.cfg.seq_reset_prob and m.rng.random() < self.cfg.seq_reset_prob:
                m.seq = m.rng.randrange(
                    0, max(1, prev // 100)
                )  # restart lower, as after maintenance
            m.pub_seq = m.seq
            m.book_ts = now_ms
            if ("books", inst) in self.subs:
                if inst in self.faults.gap:
                    self.faults.gap.discard(inst)  # this update is never sent: a seqId gap
                else:
                    corrupt = inst in self.faults.corrupt
                    self.faults.corrupt.discard(inst)
                    asks = [m.level(False, p) for p in sorted(ach)]
                    bids = [m.level(True, p) for p in sorted(bch, reverse=True)]
                    self.send(
                        ("books", inst),
                        self._books_msg(m, "update", asks, bids, prev, m.pub_seq, now_ms, corrupt),
                    )
        elif now_ms - m.book_ts >= self.heartbeat_ms:
            heartbeat = True
            m.book_ts = now_ms
            self.send(
                ("books", inst), self._books_msg(m, "update", [], [], m.pub_seq, m.pub_seq, now_ms)
            )
        if ("books5", inst) in self.subs:
            top = (
                tuple(m.book.bids.top(5)),
                tuple(m.book.asks.top(5)),
                tuple(m.book.bids.levels[p][0] for p in m.book.bids.top(5)),
                tuple(m.book.asks.levels[p][0] for p in m.book.asks.top(5)),
            )
            if heartbeat or top != self._last_b5.get(inst):
                self._last_b5[inst] = top
                self.send(("books5", inst), self._books5_msg(m, now_ms))
        if heartbeat and ("bbo-tbt", inst) in self.subs:
            self.send(
                ("bbo-tbt", inst),
                self._bbo_msg(m, now_ms, m.pub_seq, m.top_level(True), m.top_level(False)),
            )

    def flush_candles(self, now_ms: int) -> None:
        """Once a second: roll every bar series; push closed bars (confirm 1) and the forming one."""
        for m in self.markets.values():
            for bar, series in m.candles.items():
                series.roll(now_ms, m.last_px)
                key = ("candle" + bar, m.inst_id)
                if key in self.subs:
                    for closed in series.closed:
                        self.send(
                            key,
                            {
                                "arg": {"channel": key[0], "instId": m.inst_id},
                                "data": [views.candle_row(m, closed, "1")],
                            },
                        )
                    if series.dirty:
                        self.send(
                            key,
                            {
                                "arg": {"channel": key[0], "instId": m.inst_id},
                                "data": [views.candle_row(m, series.bars[-1], "0")],
                            },
                        )
                series.closed.clear()
                series.dirty = False
