"""The OKX order-book checksum (protocol notes §5.3). Pure, stdlib only.

Take the first 25 bids and the first 25 asks (best first) of the book *after* applying a message,
interleave them as ``bid px, bid sz, ask px, ask sz`` per index, skipping the missing entries of a
shorter side (no padding), join every field with ``:`` using the strings exactly as received, take
``zlib.crc32`` of the UTF-8 bytes and read it as a signed 32-bit integer, which is how OKX sends it.

Since 2026-06-23 production sends ``checksum: 0`` (or no key at all): callers verify only when the
field is present and non-zero; see ``okx.book``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zlib import crc32

if TYPE_CHECKING:  # annotations only: at run time this module needs nothing but zlib
    from okx.records import Level

CHECKSUM_DEPTH = 25


def checksum_string(bids: list[Level], asks: list[Level]) -> str:
    """The string OKX hashes, from best-first level lists ([px, sz, ...]); only the first 25 count."""
    b = bids[:CHECKSUM_DEPTH]
    a = asks[:CHECKSUM_DEPTH]
    # The common case (both sides at least 25 deep) is one pass over the zipped pairs.
    parts = [f"{x[0]}:{x[1]}:{y[0]}:{y[1]}" for x, y in zip(b, a)]
    nb = len(b)
    na = len(a)
    if nb != na:
        rest = b[na:] if nb > na else a[nb:]
        parts.extend([f"{x[0]}:{x[1]}" for x in rest])
    return ":".join(parts)


def signed_crc32(text: str) -> int:
    """zlib.crc32 of the UTF-8 bytes, as a signed int32 (OKX's representation)."""
    return (crc32(text.encode()) ^ 0x80000000) - 0x80000000


def okx_checksum(bids: list[Level], asks: list[Level]) -> int:
    """The signed CRC32 OKX would send for a book whose best-first sides are ``bids`` and ``asks``."""
    return signed_crc32(checksum_string(bids, asks))
