"""One side of an order book: building it from a snapshot, and applying an update's levels to
it, in pure Python or through the compiled loop (okx/_bookaccel.c) when it is built.

A side is four structures (see okx/book.py and docs/book.md):
    lv    price string -> level (the original ``[px, sz, "0", count]`` list as received)
    kf    price string -> sort key: ``float(px)`` for asks, ``-float(px)`` for bids
    keys  sort keys, ascending = best first (bisect works the same on both sides)
    pxs   price strings in the same order as keys
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from okx.records import Level

__all__ = ["SideLoop", "apply_side_py", "build_side", "compiled_side", "is_zero"]

# apply_side(levels, lv, kf, keys, pxs, negate, cap, kf_cap): the per-side update loop.
SideLoop = Callable[
    [list[Level], dict[str, Level], dict[str, float], list[float], list[str], bool, int, int], None
]

# The compiled per-side update loop (okx/_bookaccel.c), built by `pip install` when a C
# compiler is available, else None. It works on the same structures with the same semantics as
# apply_side_py below, which stays the fallback and the reference (okx.book.use_pure_python()
# makes every book run that one).
compiled_side: SideLoop | None
try:
    from okx._bookaccel import apply_side as _compiled_apply_side
except ImportError:
    compiled_side = None
else:
    compiled_side = _compiled_apply_side


def is_zero(sz: str) -> bool:
    """A size that deletes its price: "0" is what OKX sends; "0.0", "0.000" etc. too."""
    return sz == "0" or (sz[:1] == "0" and not sz.strip("0."))


def build_side(
    levels: list[Level], sign: float, cap: int | None
) -> tuple[dict[str, Level], dict[str, float], list[float], list[str]]:
    """(lv, kf, keys, pxs) of a snapshot side: zero sizes left out, keys = sign * float(px), at
    most `cap` levels (None = all)."""
    lv: dict[str, Level] = {}
    kf: dict[str, float] = {}
    byk: dict[float, str] = {}
    for lvl in levels:
        if is_zero(lvl[1]):
            continue
        px = lvl[0]
        k = sign * float(px)
        old = byk.get(k)
        if old is not None:  # the same price twice (possibly spelt differently): the last wins
            del lv[old]
            del kf[old]
        byk[k] = px
        lv[px] = lvl
        kf[px] = k
    keys = sorted(byk)
    if cap is not None and len(keys) > cap:
        del keys[cap:]
    pxs = [byk[k] for k in keys]
    if len(pxs) < len(lv):
        lv = {px: lv[px] for px in pxs}
        kf = {px: kf[px] for px in pxs}
    return lv, kf, keys, pxs


def apply_side_py(
    levels: list[Level],
    lv: dict[str, Level],
    kf: dict[str, float],
    keys: list[float],
    pxs: list[str],
    negate: bool,
    cap: int,
    kf_cap: int,
) -> None:
    """Apply one side of an update in place: the pure loop, and the reference for the compiled
    `okx._bookaccel.apply_side`, which has this signature and these semantics.

    A zero size (any spelling) deletes the price, matched by value when the spelling is not
    held, else ignored (deletes of unknown prices are normal on OKX); a new spelling of a held
    value replaces the level and keeps the new string. The side is then trimmed to `cap` levels.
    kf doubles as a float() cache for prices seen; past `kf_cap` entries it is rebuilt from the
    held prices. float() errors (ValueError, TypeError) propagate: the caller invalidates.
    """
    for lvl in levels:
        px = lvl[0]
        sz = lvl[1]
        # Zero in any spelling ("0", "0.0", ...); every such string sorts below "1", so most
        # sizes cost one comparison.
        if sz < "1" and (sz == "0" or (sz and not sz.strip("0."))):
            if lv.pop(px, None) is not None:
                i = bisect_left(keys, kf[px])
                del keys[i]
                del pxs[i]
                continue
            k = kf.get(px)
            if k is None:
                k = kf[px] = -float(px) if negate else float(px)
            i = bisect_left(keys, k)
            if i < len(keys) and keys[i] == k:
                del lv[pxs[i]]
                del keys[i]
                del pxs[i]
        elif px in lv:
            lv[px] = lvl
        else:
            k = kf.get(px)
            if k is None:
                k = kf[px] = -float(px) if negate else float(px)
            i = bisect_left(keys, k)
            if i < len(keys) and keys[i] == k:  # same value, new spelling: replace
                del lv[pxs[i]]
                pxs[i] = px
            else:
                keys.insert(i, k)
                pxs.insert(i, px)
            lv[px] = lvl
    if len(keys) > cap:
        for px in pxs[cap:]:
            del lv[px]
        del keys[cap:]
        del pxs[cap:]
    if len(kf) > kf_cap:
        held = {px: kf[px] for px in pxs}
        kf.clear()
        kf.update(held)
