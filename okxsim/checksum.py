"""OKX's order book CRC32 checksum (own implementation; see protocol doc §5.3)."""

from __future__ import annotations

import zlib


def okx_checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """Signed int32 CRC32 of "bp:bs:ap:as:..." over the first 25 levels, interleaved; a short
    side is skipped, not padded. ``bids``/``asks`` are [px, sz, ...] string levels, best first."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(bids[i][0])
            parts.append(bids[i][1])
        if i < len(asks):
            parts.append(asks[i][0])
            parts.append(asks[i][1])
    v = zlib.crc32(":".join(parts).encode())
    return v - (1 << 32) if v >= (1 << 31) else v
