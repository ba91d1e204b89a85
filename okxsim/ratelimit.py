"""Fixed-window REST rate limits per endpoint (values from the protocol doc, §6)."""

from __future__ import annotations

import time

# path (after /api/v5) -> (requests, window seconds)
LIMITS: dict[str, tuple[int, float]] = {
    "/market/books": (40, 2),
    "/market/books-full": (10, 2),
    "/market/trades": (100, 2),
    "/market/history-trades": (20, 2),
    "/market/candles": (40, 2),
    "/market/history-candles": (20, 2),
    "/market/ticker": (20, 2),
    "/market/tickers": (20, 2),
    "/trade/orders-history": (40, 2),
    "/trade/orders-history-archive": (20, 2),
    "/trade/fills": (60, 2),
    "/trade/fills-history": (10, 2),
    "/account/balance": (10, 2),
    "/account/positions": (10, 2),
    "/public/instruments": (20, 2),
    "/public/time": (10, 2),
}


class RateLimiter:
    """Counts per (endpoint, client key) in sliding windows of the endpoint's length."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = (
            scale  # multiply limits (tests may raise them); strictness is set by the caller
        )
        self._hits: dict[tuple[str, str], list[float]] = {}

    def allow(self, endpoint: str, who: str) -> bool:
        lim = LIMITS.get(endpoint)
        if lim is None:
            return True
        n, window = lim
        now = time.monotonic()
        hits = self._hits.setdefault((endpoint, who), [])
        cut = now - window
        while hits and hits[0] <= cut:
            hits.pop(0)
        if len(hits) >= int(n * self.scale):
            return False
        hits.append(now)
        return True
