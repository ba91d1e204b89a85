"""What OKX serves where: channel names, endpoints, login needs. Facts, no logic.

Source: okx-v5-protocol.md sections 1 and 4. Candles live only on /business since 2023 (64001 on
/public); trades-all is /business too; the *-l2-tbt books need a login on /public plus a VIP tier.
"""

from __future__ import annotations

PUBLIC, BUSINESS, PRIVATE = "public", "business", "private"
ENDPOINTS = (PUBLIC, BUSINESS, PRIVATE)

BOOK_CHANNELS = frozenset({"books", "books5", "bbo-tbt", "books50-l2-tbt", "books-l2-tbt"})
# Channels whose pushes carry a seqId/prevSeqId chain (snapshot then incremental updates).
INCREMENTAL_BOOK_CHANNELS = frozenset({"books", "books50-l2-tbt", "books-l2-tbt"})
# Book channels that need a login on the public connection (and a VIP tier, else 64003).
LOGIN_BOOK_CHANNELS = frozenset({"books50-l2-tbt", "books-l2-tbt"})

CANDLE_BARS = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1H",
    "2H",
    "4H",
    "6H",
    "12H",
    "1D",
    "2D",
    "3D",
    "5D",
    "1W",
    "1M",
    "3M",
    "6Hutc",
    "12Hutc",
    "1Dutc",
    "2Dutc",
    "3Dutc",
    "5Dutc",
    "1Wutc",
    "1Mutc",
    "3Mutc",
)
CANDLE_CHANNELS = frozenset(f"candle{bar}" for bar in CANDLE_BARS)

PRIVATE_CHANNELS = frozenset({"orders", "account", "positions", "balance_and_position"})

PUBLIC_CHANNELS = BOOK_CHANNELS | {"trades", "tickers"}
BUSINESS_CHANNELS = CANDLE_CHANNELS | {"trades-all"}

# Which record kind (core.contract.KINDS) each channel's records become.
KIND_OF_CHANNEL: dict[str, str] = {
    **{c: "books" for c in BOOK_CHANNELS},
    "trades": "trades",
    "trades-all": "trades",
    "tickers": "tickers",
    **{c: "candles" for c in CANDLE_CHANNELS},
    "orders": "orders",
    "account": "balances",
    "positions": "positions",
    # balance_and_position yields both balances and positions: the record type decides.
    "balance_and_position": "balances",
}


def endpoint_for(channel: str) -> str:
    """The endpoint that serves `channel`; ValueError for a channel OKX does not have (here)."""
    if channel in PUBLIC_CHANNELS:
        return PUBLIC
    if channel in BUSINESS_CHANNELS:
        return BUSINESS
    if channel in PRIVATE_CHANNELS:
        return PRIVATE
    if channel.startswith("candle"):
        raise ValueError(f"unknown candle bar in {channel!r}; bars are {', '.join(CANDLE_BARS)}")
    raise ValueError(f"unknown channel {channel!r}")


def needs_login(channel: str) -> bool:
    return channel in PRIVATE_CHANNELS or channel in LOGIN_BOOK_CHANNELS


def is_per_instrument(channel: str) -> bool:
    """Public channels are subscribed per instId; private ones per instType (ANY by default)."""
    return channel not in PRIVATE_CHANNELS
