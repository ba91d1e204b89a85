"""The 400-level order book of one instrument, in integer units, with change tracking."""

from __future__ import annotations

from bisect import bisect_left, insort

DEPTH = 400


class Side:
    """One side. ``prices`` is ascending for both sides; best bid is prices[-1], best ask prices[0]."""

    __slots__ = ("is_bid", "prices", "levels", "changed")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.prices: list[int] = []
        self.levels: dict[int, list[int]] = {}  # px -> [size, order count]
        self.changed: set[int] = set()

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def worst(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[0] if self.is_bid else self.prices[-1]

    def add(self, px: int, sz: int, orders: int = 1) -> None:
        lvl = self.levels.get(px)
        if lvl is None:
            self.levels[px] = [sz, orders]
            insort(self.prices, px)
        else:
            lvl[0] += sz
            lvl[1] += orders
        self.changed.add(px)

    def remove(self, px: int, sz: int, orders: int = 1) -> None:
        """Take sz off a level (deletes it at zero)."""
        lvl = self.levels[px]
        lvl[0] -= sz
        lvl[1] = max(1, lvl[1] - orders)
        if lvl[0] <= 0:
            self.delete(px)
        else:
            self.changed.add(px)

    def delete(self, px: int) -> None:
        if self.levels.pop(px, None) is not None:
            del self.prices[bisect_left(self.prices, px)]
            self.changed.add(px)

    def nth_from_best(self, i: int) -> int:
        return self.prices[-1 - i] if self.is_bid else self.prices[i]

    def top(self, n: int) -> list[int]:
        """The best n prices, best first."""
        if self.is_bid:
            return self.prices[: -n - 1 : -1] if n < len(self.prices) else self.prices[::-1]
        return self.prices[:n]

    def trim(self, depth: int = DEPTH) -> None:
        while len(self.prices) > depth:
            self.delete(self.worst())  # type: ignore[arg-type]


class Book:
    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = Side(True)
        self.asks = Side(False)

    def side(self, is_bid: bool) -> Side:
        return self.bids if is_bid else self.asks

    def bbo(self) -> tuple[int | None, int | None]:
        return self.bids.best(), self.asks.best()

    def take_changes(self) -> tuple[set[int], set[int]]:
        b, a = self.bids.changed, self.asks.changed
        self.bids.changed, self.asks.changed = set(), set()
        return b, a
