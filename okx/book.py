"""Pure order-book state for one (channel, instId): snapshots, updates, seqId chain, checksum, REST
bootstrap. No I/O, no clocks, no logging: every call returns a `BookResult` the caller counts/logs.

Layout (see docs/book.md), per side:
    lv    price string -> level (the original ``[px, sz, "0", count]`` list as received)
    kf    price string -> sort key: ``float(px)`` for asks, ``-float(px)`` for bids
    keys  sort keys, ascending = best first (bisect works the same on both sides)
    pxs   price strings in the same order as keys
A size change is one dict store keyed by the price string (no float parsing, no reordering);
``float()`` and ``bisect`` run only when a price appears or disappears. Levels are keyed by decimal
value: a new price string equal in value to a held one ("3366.0" vs "3366") replaces it, and a
delete of an unknown string is matched by value before being ignored.

Reading an invalid book raises `BookInvalid` (check `valid` first); nothing returns stale state.
"""

# Over 400 lines on purpose: OrderBook is one state machine (seqId chain, REST bootstrap buffer
# and anchor, the books5 fast path) over one set of private fields that every transition
# reads and writes. Cutting its methods into other modules would leave a mixin or functions
# reaching into those fields from outside, and add calls on the per-message path. What stands
# apart lives beside it: okx/book_sides.py (building and updating one side; the compiled loop)
# and okx/book_status.py (the results).
from __future__ import annotations

from okx.book_sides import SideLoop, apply_side_py, build_side, compiled_side
from okx.book_status import OK_STATUSES, BookResult, BookStatus
from okx.checksum import CHECKSUM_DEPTH, checksum_string, signed_crc32
from okx.errors import BookInvalid
from okx.records import BookData, Level

__all__ = [
    "ACCELERATED",
    "OK_STATUSES",
    "BookInvalid",
    "BookResult",
    "BookStatus",
    "OrderBook",
    "use_pure_python",
]

# True while OrderBooks run the compiled per-side loop (okx/_bookaccel.c, see okx/book_sides.py);
# `use_pure_python()` switches the whole process to the pure loop (the feeder's settings apply
# OKX_BOOK_PURE=1 through it; this module reads no environment).
ACCELERATED: bool = compiled_side is not None


# Preallocated results for the hot paths: no allocation per accepted message.
_APPLIED = BookResult(BookStatus.APPLIED)
_APPLIED_V = BookResult(BookStatus.APPLIED, True)
_HEARTBEAT = BookResult(BookStatus.HEARTBEAT)
_HEARTBEAT_V = BookResult(BookStatus.HEARTBEAT, True)
_RESET = BookResult(BookStatus.RESET)
_RESET_V = BookResult(BookStatus.RESET, True)
_SNAPSHOT = BookResult(BookStatus.SNAPSHOT)
_SNAPSHOT_V = BookResult(BookStatus.SNAPSHOT, True)
_BUFFERED = BookResult(BookStatus.BUFFERED)
_STALE = BookResult(BookStatus.STALE)

# A buffered update, (prevSeqId, seqId, update): only updates carrying both ids are buffered
# (they are what a REST snapshot is spliced with), so the ids are held as ints beside it.
_Buffered = tuple[int, int, BookData]
Sides = tuple[list[Level], list[Level]]  # (bids, asks), best first

NO_SNAPSHOT = "no snapshot yet"
BOOTSTRAPPING = "bootstrapping: waiting for a REST snapshot"


class OrderBook:
    """The local book of one (channel, instId).

    Incremental channels (books, books-l2-tbt, books50-l2-tbt) send ``action`` "snapshot" then
    "update"; books5 and bbo-tbt (``action`` None) replace the whole book on every push.

    ``depth``: levels kept per side (None = unbounded), fixed at construction; it must be >= the
    channel's depth (400 for books/books-l2-tbt, 50 for books50-l2-tbt), otherwise the tail can go
    wrong. ``verify_checksum``: check non-zero checksums. ``allow_crossed``: accept best bid >= best
    ask (call auctions before the open). ``max_buffer``: updates held while bootstrapping.

    Messages without seqId/prevSeqId (old recordings) chain only onto a snapshot that also had no
    seqId; the checksum is then the only check.
    """

    __slots__ = (
        "channel",
        "inst_id",
        "depth",
        "verify_checksum",
        "allow_crossed",
        "max_buffer",
        "epoch",
        "_cap",
        "_blv",
        "_bkf",
        "_bk",
        "_bpx",
        "_alv",
        "_akf",
        "_ak",
        "_apx",
        "_seq",
        "_ts",
        "_valid",
        "_reason",
        "_fresh",
        "_bootstrapping",
        "_buffer",
        "_anchor",
        "_pushed",
    )

    # The compiled side loop, or None for the pure one (a subclass may set None to force it).
    _accel_side: SideLoop | None = compiled_side

    def __init__(
        self,
        channel: str,
        inst_id: str,
        depth: int | None = 400,
        *,
        verify_checksum: bool = True,
        allow_crossed: bool = False,
        max_buffer: int = 2000,
    ) -> None:
        self.channel = channel
        self.inst_id = inst_id
        self.depth = depth
        self._cap = depth if depth is not None else 1 << 62
        self.verify_checksum = verify_checksum
        self.allow_crossed = allow_crossed
        self.max_buffer = max_buffer
        # Bumped when REST snapshots requested earlier can no longer be trusted (seqId reset while
        # bootstrapping); pass it back to offer_snapshot(epoch=...) to have such snapshots refused.
        self.epoch = 0
        self._blv: dict[str, Level] = {}  # bids: px -> level
        self._bkf: dict[str, float] = {}  # bids: px -> sort key (-float(px))
        self._bk: list[float] = []  # bids: sort keys ascending = best first
        self._bpx: list[str] = []  # bids: px strings in the order of _bk
        self._alv: dict[str, Level] = {}  # asks: same, sort key float(px)
        self._akf: dict[str, float] = {}
        self._ak: list[float] = []
        self._apx: list[str] = []
        self._seq: int | None = None
        self._ts: int | None = None
        self._valid = False
        self._reason: str | None = NO_SNAPSHOT
        self._fresh = True  # no snapshot and no update seen yet
        self._bootstrapping = False
        self._buffer: list[_Buffered] = []
        self._anchor: int | None = None  # REST snapshot seqId awaiting its first chained update
        # books5 / bbo-tbt push the whole short book each time, already best first: such a push
        # is kept as received, (bids, asks), and the indexed structures above are built from it
        # only if something needs them (_materialize). None when the structures are current.
        self._pushed: Sides | None = None

    # ----- state ---------------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        return self._valid

    @property
    def reason(self) -> str | None:
        """Why the book is not valid (None when valid)."""
        return self._reason

    @property
    def bootstrapping(self) -> bool:
        return self._bootstrapping

    @property
    def buffered(self) -> int:
        """Updates held for the REST snapshot."""
        return len(self._buffer)

    @property
    def seq_id(self) -> int | None:
        """seqId of the last applied message (a REST snapshot's seqId right after a splice)."""
        self._check_readable()
        return self._seq

    @property
    def ts(self) -> int | None:
        """ts (ms) of the last applied message."""
        self._check_readable()
        return self._ts

    def top(self, n: int | None = None) -> Sides:
        """(bids, asks), best first, the original level lists; at most n a side (None = all).

        Raises BookInvalid when the book is not valid. The lists are new; the levels are shared
        with the book and must not be mutated.
        """
        self._check_readable()
        pushed = self._pushed
        if pushed is not None:
            return (pushed[0][:n], pushed[1][:n]) if n is not None else (pushed[0][:], pushed[1][:])
        blv = self._blv
        alv = self._alv
        bpx = self._bpx if n is None else self._bpx[:n]
        apx = self._apx if n is None else self._apx[:n]
        return [blv[p] for p in bpx], [alv[p] for p in apx]

    def view(self, n: int | None) -> tuple[int | None, int | None, list[Level], list[Level]]:
        """(ts, seqId, bids, asks) with at most n levels a side: what a publisher needs, in one
        call. Raises BookInvalid like `top`."""
        if not self._valid:
            self._check_readable()
        bids, asks = self.top(n)
        return self._ts, self._seq, bids, asks

    def sizes(self) -> tuple[int, int]:
        """(bid levels, ask levels) currently held."""
        self._check_readable()
        if self._pushed is not None:
            self._materialize(self._pushed)
        return len(self._bk), len(self._ak)

    def checksum(self) -> int:
        """The OKX checksum of the current book (signed int32)."""
        self._check_readable()
        return self._checksum()

    def _check_readable(self) -> None:
        if not self._valid:
            raise BookInvalid(f"{self.channel}:{self.inst_id} book is invalid: {self._reason}")

    # ----- applying WS messages ------------------------------------------------------------------

    def apply(self, msg: BookData) -> BookResult:
        """Apply one parsed push for this (channel, instId) and say what happened."""
        try:
            if msg.action != "update":
                # "snapshot" on incremental channels, None on books5 / bbo-tbt: replace everything.
                # (A WS snapshot while bootstrapping is simply taken: the buffer predates it.)
                if msg.action is None:
                    result = self._replace_pushed(msg)
                    if result is not None:
                        return result
                return self._replace(msg.asks, msg.bids, msg.seqId, msg.ts, msg.checksum)
            if self._pushed is not None:
                self._materialize(self._pushed)
            if not self._valid:
                return self._update_not_valid(msg)
            if self._anchor is not None:
                return self._update_anchored(msg, self._anchor)
            prev = msg.prevSeqId
            if prev != self._seq:
                return self._gap(f"prevSeqId {prev} != last seqId {self._seq} (seqId {msg.seqId})")

            cap = self._cap
            side = self._accel_side
            if side is None:
                side = apply_side_py
            # One side loop on each side's four structures, bids' sort keys negated; kf is
            # bounded by cap * 4 (see okx.book_sides.apply_side_py).
            if msg.bids:
                side(msg.bids, self._blv, self._bkf, self._bk, self._bpx, True, cap, cap * 4)
            if msg.asks:
                side(msg.asks, self._alv, self._akf, self._ak, self._apx, False, cap, cap * 4)

            seq = msg.seqId
            self._seq = seq
            self._ts = msg.ts
            cs = msg.checksum
            verified = False
            if cs and self.verify_checksum:
                got = self._checksum()
                if got != cs:
                    return self._invalidate(
                        BookStatus.CHECKSUM_MISMATCH, f"checksum {cs} != local {got} at seqId {seq}"
                    )
                verified = True
            if not self.allow_crossed:
                bk = self._bk
                ak = self._ak
                if bk and ak and bk[0] + ak[0] <= 0.0:  # -best_bid + best_ask <= 0
                    return self._crossed()
            if seq is None or prev is None or seq > prev:
                return _APPLIED_V if verified else _APPLIED
            if seq == prev:
                if not msg.asks and not msg.bids:
                    return _HEARTBEAT_V if verified else _HEARTBEAT
                return _APPLIED_V if verified else _APPLIED
            return _RESET_V if verified else _RESET
        except (ValueError, TypeError) as exc:
            # A price or size that is not a number (hostile or corrupt frame) may have left this
            # update half applied: the book can no longer be trusted, so it resyncs like a gap.
            return self._invalidate(
                BookStatus.BAD_LEVEL, f"unusable level at seqId {msg.seqId}: {exc}"[:200]
            )

    def _apply_update(self, msg: BookData) -> BookResult:
        """Apply an update whose chaining the caller has already established (splices)."""
        self._seq = msg.prevSeqId
        return self.apply(msg)

    def _checksum(self) -> int:
        if self._pushed is not None:
            self._materialize(self._pushed)
        blv = self._blv
        alv = self._alv
        return signed_crc32(
            checksum_string(
                [blv[p] for p in self._bpx[:CHECKSUM_DEPTH]],
                [alv[p] for p in self._apx[:CHECKSUM_DEPTH]],
            )
        )

    def _replace(
        self, asks: list[Level], bids: list[Level], seq: int | None, ts: int, cs: int | None
    ) -> BookResult:
        cap = self.depth
        self._pushed = None
        self._blv, self._bkf, self._bk, self._bpx = build_side(bids, -1.0, cap)
        self._alv, self._akf, self._ak, self._apx = build_side(asks, 1.0, cap)
        self._seq = seq
        self._ts = ts
        self._valid = True
        self._reason = None
        self._fresh = False
        self._bootstrapping = False
        self._buffer = []
        self._anchor = None
        verified = False
        if cs and self.verify_checksum:
            got = self._checksum()
            if got != cs:
                return self._invalidate(
                    BookStatus.CHECKSUM_MISMATCH,
                    f"snapshot checksum {cs} != local {got} at seqId {seq}",
                )
            verified = True
        if not self.allow_crossed:
            bk = self._bk
            ak = self._ak
            if bk and ak and bk[0] + ak[0] <= 0.0:
                return self._crossed()
        return _SNAPSHOT_V if verified else _SNAPSHOT

    def _replace_pushed(self, msg: BookData) -> BookResult | None:
        """A books5 / bbo-tbt push kept as received, when it is already in order: strictly
        best first, no zero sizes, within the depth cap, and no checksum to verify. Else None
        (the caller takes the general path, which sorts, de-duplicates and verifies)."""
        bids = msg.bids
        asks = msg.asks
        cap = self._cap
        if (msg.checksum and self.verify_checksum) or len(bids) > cap or len(asks) > cap:
            return None
        best_bid = best_ask = None
        last = None
        for lvl in bids:  # descending prices
            sz = lvl[1]
            if sz == "0" or (sz[:1] == "0" and not sz.strip("0.")):
                return None
            k = float(lvl[0])
            if last is not None and k >= last:
                return None
            last = k
            if best_bid is None:
                best_bid = k
        last = None
        for lvl in asks:  # ascending prices
            sz = lvl[1]
            if sz == "0" or (sz[:1] == "0" and not sz.strip("0.")):
                return None
            k = float(lvl[0])
            if last is not None and k <= last:
                return None
            last = k
            if best_ask is None:
                best_ask = k
        self._pushed = (bids, asks)
        self._seq = msg.seqId
        self._ts = msg.ts
        self._valid = True
        self._reason = None
        self._fresh = False
        self._bootstrapping = False
        if self._buffer:
            self._buffer = []
        self._anchor = None
        if (
            best_bid is not None
            and best_ask is not None
            and best_bid >= best_ask
            and not self.allow_crossed
        ):
            return self._invalidate(
                BookStatus.CROSSED,
                f"best bid {bids[0][0]} >= best ask {asks[0][0]} at seqId {self._seq}",
            )
        return _SNAPSHOT

    def _materialize(self, pushed: Sides) -> None:
        """Build the indexed structures from a push kept as received (`_pushed`, not None)."""
        bids, asks = pushed
        self._pushed = None
        cap = self.depth
        self._blv, self._bkf, self._bk, self._bpx = build_side(bids, -1.0, cap)
        self._alv, self._akf, self._ak, self._apx = build_side(asks, 1.0, cap)

    def _invalidate(self, status: BookStatus, reason: str) -> BookResult:
        self._valid = False
        self._reason = f"{status.value}: {reason}"
        self._anchor = None
        return BookResult(status, False, self._reason)

    def _gap(self, reason: str) -> BookResult:
        return self._invalidate(BookStatus.GAP, reason)

    def _crossed(self) -> BookResult:
        if self._pushed is not None:
            self._materialize(self._pushed)
        bid = self._bpx[0]
        ask = self._apx[0]
        return self._invalidate(
            BookStatus.CROSSED, f"best bid {bid} >= best ask {ask} at seqId {self._seq}"
        )

    def _update_not_valid(self, msg: BookData) -> BookResult:
        if self._bootstrapping:
            return self._buffer_update(msg)
        if self._fresh:
            self._fresh = False
            return self._gap(
                f"update before any snapshot (prevSeqId {msg.prevSeqId}, seqId {msg.seqId})"
            )
        return BookResult(BookStatus.DROPPED_INVALID, False, self._reason)

    # ----- REST bootstrap ------------------------------------------------------------------------

    def begin_bootstrap(self) -> None:
        """Invalidate the book and buffer updates until `offer_snapshot` (or a WS snapshot)."""
        self._valid = False
        self._reason = BOOTSTRAPPING
        self._fresh = False
        self._bootstrapping = True
        self._buffer = []
        self._anchor = None

    def _buffer_update(self, msg: BookData) -> BookResult:
        seq = msg.seqId
        prev = msg.prevSeqId
        if seq is None or prev is None:
            return BookResult(
                BookStatus.DROPPED_INVALID,
                False,
                "update without seqId/prevSeqId cannot be spliced onto a REST snapshot",
            )
        buf = self._buffer
        if seq < prev:
            # A seqId reset (maintenance) while bootstrapping: nothing buffered and no snapshot
            # requested so far can be spliced with what follows. Start over.
            self.begin_bootstrap()
            self.epoch += 1
            return BookResult(
                BookStatus.NEED_SNAPSHOT,
                False,
                f"seqId reset ({prev} -> {seq}) while bootstrapping; "
                f"fetch a new snapshot (epoch {self.epoch})",
            )
        if len(buf) >= self.max_buffer:
            dropped = len(buf)
            buf.clear()
            buf.append((prev, seq, msg))
            return BookResult(
                BookStatus.BUFFER_OVERFLOW,
                False,
                f"bootstrap buffer full ({dropped} updates) before a usable REST "
                f"snapshot; restarted from seqId {seq}",
            )
        buf.append((prev, seq, msg))
        return _BUFFERED

    def offer_snapshot(
        self,
        asks: list[Level],
        bids: list[Level],
        seq_id: int,
        ts: int,
        *,
        epoch: int | None = None,
    ) -> BookResult:
        """Offer a REST snapshot (GET /api/v5/market/books: asks, bids, seqId, ts).

        Outside bootstrapping this acts as `begin_bootstrap()` followed by the offer (empty buffer).
        Returns SNAPSHOT (book valid; buffered updates applied), NEED_SNAPSHOT (fetch a newer
        snapshot; updates keep being buffered), or the failure status of a replayed update
        (CHECKSUM_MISMATCH / CROSSED). ``epoch``: the book's `epoch` when the snapshot was
        requested; a stale epoch is refused.
        """
        if not self._bootstrapping:
            self.begin_bootstrap()
        if epoch is not None and epoch != self.epoch:
            return BookResult(
                BookStatus.NEED_SNAPSHOT,
                False,
                f"snapshot requested in epoch {epoch}, book is at epoch {self.epoch}",
            )
        buf = self._buffer
        if buf:
            first_prev = buf[0][0]
            if seq_id < first_prev:
                return BookResult(
                    BookStatus.NEED_SNAPSHOT,
                    False,
                    f"REST snapshot seqId {seq_id} older than first buffered "
                    f"prevSeqId {first_prev}",
                )
            i = 0
            n = len(buf)
            while i < n and buf[i][1] <= seq_id:
                i += 1
            kept = buf[i:]
            if kept:
                kept_prev, kept_seq, _ = kept[0]
                if not (kept_prev <= seq_id < kept_seq):
                    self._buffer = kept
                    return BookResult(
                        BookStatus.NEED_SNAPSHOT,
                        False,
                        f"hole after REST snapshot seqId {seq_id}: first kept update "
                        f"has prevSeqId {kept_prev}, seqId {kept_seq}",
                    )
        else:
            kept = []
        result = self._replace(asks, bids, seq_id, ts, None)
        if not result.ok:
            return result  # crossed REST snapshot: invalid, caller starts over
        if not kept:
            # The next update must satisfy prevSeqId <= seq_id < seqId (or be a heartbeat at
            # seq_id).
            self._anchor = seq_id
            return result
        # The first kept update satisfies prevSeqId <= seq_id < seqId; the rest must chain exactly.
        for j, (u_prev, _, u) in enumerate(kept):
            if j and u_prev != self._seq:
                reason = (
                    f"gap inside buffered updates: prevSeqId {u_prev} != last seqId {self._seq}"
                )
                self.begin_bootstrap()
                self._buffer = kept[j:]
                return BookResult(BookStatus.NEED_SNAPSHOT, False, reason)
            r = self._apply_update(u)
            if not r.ok:
                return r
        return _SNAPSHOT

    def _update_anchored(self, msg: BookData, anchor: int) -> BookResult:
        """First update after a REST snapshot taken with nothing buffered after it (`anchor`:
        that snapshot's seqId, `_anchor`)."""
        prev = msg.prevSeqId
        seq = msg.seqId
        if prev is None or seq is None:
            return self._gap(f"update without seqId/prevSeqId after REST snapshot {anchor}")
        if prev <= anchor < seq:
            self._anchor = None
            return self._apply_update(msg)
        if seq == prev == anchor and not msg.asks and not msg.bids:
            self._anchor = None
            return self._apply_update(msg)
        if prev == anchor and seq < prev:
            self._anchor = None
            return self._apply_update(msg)  # reset right at the snapshot point
        if seq < prev:
            reason = f"seqId reset ({prev} -> {seq}) right after REST snapshot {anchor}"
            self.begin_bootstrap()
            self.epoch += 1
            return BookResult(BookStatus.NEED_SNAPSHOT, False, reason)
        if prev > anchor:
            reason = (
                f"hole after REST snapshot seqId {anchor}: update prevSeqId {prev}, seqId {seq}"
            )
            self.begin_bootstrap()
            self._buffer.append((prev, seq, msg))
            return BookResult(BookStatus.NEED_SNAPSHOT, False, reason)
        return _STALE  # seqId <= anchor: already contained in the REST snapshot


def use_pure_python(pure: bool = True) -> None:
    """Run every OrderBook of this process on the pure-Python loop (or, with False, back on the
    compiled one when it is built). `ACCELERATED` follows."""
    global ACCELERATED
    OrderBook._accel_side = None if pure else compiled_side
    ACCELERATED = OrderBook._accel_side is not None
