"""Instrument specs and OKX-style decimal formatting from integer tick/lot units."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstSpec:
    """A spot instrument. Prices are integers in units of 10**-px_dp, sizes in 10**-sz_dp."""

    inst_id: str
    px_dp: int  # tickSz = 10**-px_dp
    sz_dp: int  # lotSz = 10**-sz_dp
    start_px: str  # starting mid price
    unit_sz: str  # a typical order size
    spacing: int = 1  # ticks between resting levels in the initial book

    @property
    def base(self) -> str:
        return self.inst_id.split("-")[0]

    @property
    def quote(self) -> str:
        return self.inst_id.split("-")[1]

    @property
    def tick_sz(self) -> str:
        return fmt_units(1, self.px_dp)

    @property
    def lot_sz(self) -> str:
        return fmt_units(1, self.sz_dp)

    def px_units(self, s: str) -> int:
        return to_units(s, self.px_dp)

    def sz_units(self, s: str) -> int:
        return to_units(s, self.sz_dp)


KNOWN = {
    "BTC-USDT": InstSpec("BTC-USDT", 1, 8, "91234.5", "0.05", 1),
    "ETH-USDT": InstSpec("ETH-USDT", 2, 6, "3012.34", "0.8", 1),
    "SOL-USDT": InstSpec("SOL-USDT", 2, 6, "142.17", "12", 1),
    "DOGE-USDT": InstSpec("DOGE-USDT", 5, 6, "0.17234", "9000", 1),
    "TON-USDT": InstSpec("TON-USDT", 3, 6, "5.123", "300", 1),
    "ETH-USDC": InstSpec("ETH-USDC", 2, 6, "3011.87", "0.5", 1),
    "BTC-USDC": InstSpec("BTC-USDC", 1, 8, "91229.3", "0.03", 1),
    "UNI-USDT": InstSpec("UNI-USDT", 3, 6, "8.412", "150", 1),
    "PEPE-USDT": InstSpec("PEPE-USDT", 9, 0, "0.000011234", "80000000", 1),
}


def spec_for(inst_id: str) -> InstSpec:
    """The spec of a known instrument, or a generic one for any other BASE-QUOTE id."""
    if inst_id in KNOWN:
        return KNOWN[inst_id]
    parts = inst_id.split("-")
    if len(parts) != 2 or not all(p.isalnum() and p.isupper() for p in parts):
        raise ValueError(f"unsupported instId {inst_id!r}: expected BASE-QUOTE spot ids")
    return InstSpec(inst_id, 2, 4, "100.00", "5", 1)


def to_units(s: str, dp: int) -> int:
    """'12.3' with dp 2 -> 1230; exact, no floats."""
    neg = s.startswith("-")
    s = s.lstrip("-")
    whole, _, frac = s.partition(".")
    if len(frac) > dp:
        if frac[dp:].strip("0"):
            raise ValueError(f"{s} has more than {dp} decimals")
        frac = frac[:dp]
    v = int(whole or "0") * 10**dp + int((frac + "0" * dp)[:dp] or "0")
    return -v if neg else v


def fmt_units(n: int, dp: int) -> str:
    """1230 with dp 2 -> '12.3' (OKX style: no trailing zeros, no exponent)."""
    if dp == 0:
        return str(n)
    neg = n < 0
    s = str(-n if neg else n).rjust(dp + 1, "0")
    whole, frac = s[:-dp], s[-dp:].rstrip("0")
    out = whole + "." + frac if frac else whole
    return "-" + out if neg else out


class Formatter:
    """Caches the decimal strings of one scale (prices repeat a lot)."""

    __slots__ = ("dp", "_cache")

    def __init__(self, dp: int) -> None:
        self.dp = dp
        self._cache: dict[int, str] = {}

    def __call__(self, n: int) -> str:
        s = self._cache.get(n)
        if s is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            s = self._cache[n] = fmt_units(n, self.dp)
        return s
