"""okx._bookaccel, the optional compiled apply loop of OrderBook: it must behave exactly
like the pure-Python loop, which stays the fallback and the reference.

Under CI, wherever a compiler and Python.h exist, the extension must have been built (a missing
build fails here instead of skipping), and
tests/test_book.py is also run once more with OKX_BOOK_PURE=1, so both loops pass the book's own
test suite whichever one this process uses.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import okx.book as book_module
from okx.book import BookStatus, OrderBook
from okx.records import BookData

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as tests/conftest.py
ROOT = Path(__file__).resolve().parents[1]

try:
    from okx import _bookaccel
except ImportError:  # no compiler when the project was installed
    _bookaccel = None


def _can_build() -> bool:
    """A C compiler and this interpreter's Python.h: what setup.py needs to build the extension."""
    import shutil
    import sysconfig

    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    return bool(compiler) and headers


# In CI, dev.sh installs a compiler and headers where it can; where they exist the build must
# exist too (a failed build is then a failure, not a skip). A machine that has no way to build it
# runs the pure loop, which tests/test_book.py covers in full.
BUILD_EXPECTED = IN_CI and _can_build()
needs_ext = pytest.mark.skipif(
    _bookaccel is None and not BUILD_EXPECTED,
    reason="okx._bookaccel not built (no C compiler or Python.h)",
)


class PureBook(OrderBook):
    __slots__ = ()
    _accel_side = None


class AccelBook(OrderBook):
    __slots__ = ()
    _accel_side = staticmethod(_bookaccel.apply_side) if _bookaccel is not None else None


def test_extension_built_in_ci():
    """Under CI=true, dev.sh setup installs a compiler and headers: the build must exist."""
    if not BUILD_EXPECTED and _bookaccel is None:
        pytest.skip("okx._bookaccel not built (no C compiler or Python.h here)")
    assert _bookaccel is not None, "okx._bookaccel missing: the C build failed in CI"
    if os.environ.get("OKX_BOOK_PURE", "") in ("", "0"):
        assert book_module.ACCELERATED is True


# ----- randomized differential test ------------------------------------------------------------


def _spell(rng: random.Random, tick: int) -> str:
    """A price of `tick` hundredths, in one of several spellings of the same value."""
    whole, frac = divmod(tick, 100)
    style = rng.random()
    if style < 0.7:
        return f"{whole}.{frac:02d}".rstrip("0").rstrip(".")
    if style < 0.85:
        return f"{whole}.{frac:02d}0"  # trailing zero: same value, other string
    if style < 0.95:
        return f"{tick / 100:.4f}"
    return f"{whole}.{frac:02d}" + "0" * rng.randint(3, 6)


ZEROS = ["0", "0", "0", "0.0", "0.000", "00", "0."]


def _size(rng: random.Random) -> str:
    return rng.choice(["1", "2.5", "0.01", "10", "0.5", "3.25", "120"])


def _stream(seed: int, n: int, bad_every: int = 0):
    """A snapshot then n updates (chained seqIds): size changes, inserts (also improving the
    best), deletes in several zero spellings, deletes of unknown prices, re-spelt prices,
    duplicate prices inside one message, and (every bad_every updates) a non-numeric price.
    Returns fresh objects on every call, so two books never share a level."""
    rng = random.Random(seed)
    held = {True: set(), False: set()}
    out = []
    bids = [[_spell(rng, t), _size(rng), "0", "1"] for t in range(10000, 9000, -5)]
    asks = [[_spell(rng, t), _size(rng), "0", "1"] for t in range(10010, 11000, 5)]
    held[True].update(range(10000, 9000, -5))
    held[False].update(range(10010, 11000, 5))
    seq = 100
    out.append(BookData("books", "X-Y", "snapshot", asks, bids, 1, seq, -1, 0))
    for u in range(n):
        side_levels = {True: [], False: []}
        for _ in range(rng.randint(0, 40)):
            is_bid = rng.random() < 0.5
            ticks = held[is_bid]
            r = rng.random()
            if r < 0.4 and ticks:
                t = rng.choice(sorted(ticks))
                side_levels[is_bid].append([_spell(rng, t), _size(rng), "0", "2"])
            elif r < 0.65:
                t = rng.randint(9000, 9995) if is_bid else rng.randint(10006, 11000)
                side_levels[is_bid].append([_spell(rng, t), _size(rng), "0", "3"])
                ticks.add(t)
            elif r < 0.9 and ticks:
                t = rng.choice(sorted(ticks))
                side_levels[is_bid].append([_spell(rng, t), rng.choice(ZEROS), "0", "0"])
                ticks.discard(t)
            else:  # a price never held, deleted
                t = rng.randint(5000, 8000) if is_bid else rng.randint(12000, 15000)
                side_levels[is_bid].append([_spell(rng, t), rng.choice(ZEROS), "0", "0"])
        if bad_every and u % bad_every == bad_every - 1:
            side_levels[rng.random() < 0.5].insert(rng.randint(0, 3), ["12a.5", "1", "0", "1"])
        prev, seq = seq, seq + rng.randint(1, 3)
        out.append(
            BookData(
                "books", "X-Y", "update", side_levels[False], side_levels[True], 1 + u, seq, prev, 0
            )
        )
    return out


def _state(book: OrderBook):
    """Everything the book holds, internal structures included."""
    if not book.valid:
        return ("invalid", book.reason)
    return (
        book.top(),
        book.sizes(),
        book.checksum(),
        book.seq_id,
        book._bk,
        book._bpx,
        book._ak,
        book._apx,
        book._blv,
        book._alv,
        book._bkf,
        book._akf,
    )


@needs_ext
@pytest.mark.parametrize("depth", [400, 37, None])
def test_compiled_loop_matches_pure_loop_on_random_streams(depth):
    msgs_pure = _stream(11, 3000)
    msgs_accel = _stream(11, 3000)
    pure = PureBook("books", "X-Y", depth)
    accel = AccelBook("books", "X-Y", depth, allow_crossed=True)
    pure.allow_crossed = True
    largest = 0
    for i, (mp, ma) in enumerate(zip(msgs_pure, msgs_accel)):
        rp = pure.apply(mp)
        ra = accel.apply(ma)
        assert rp == ra, f"message {i}"
        if i % 10 == 0 or i == len(msgs_pure) - 1:
            assert _state(pure) == _state(accel), f"message {i}"
            largest = max(largest, *accel.sizes())
    assert pure.valid and accel.valid
    if depth == 37:
        assert largest == 37  # the cap was reached (and trimmed at) and never exceeded
    # No reference leaked or lost: each level object and price string is held by as many
    # containers in one book as its twin in the other.
    gc.collect()
    for mp, ma in zip(msgs_pure[::50], msgs_accel[::50]):
        for lp, la in zip(mp.bids + mp.asks, ma.bids + ma.asks):
            assert sys.getrefcount(lp) == sys.getrefcount(la)
            assert sys.getrefcount(lp[0]) == sys.getrefcount(la[0])


@needs_ext
def test_bad_price_invalidates_both_loops_alike():
    msgs_pure = _stream(5, 400, bad_every=37)
    msgs_accel = _stream(5, 400, bad_every=37)
    pure = PureBook("books", "X-Y", allow_crossed=True)
    accel = AccelBook("books", "X-Y", allow_crossed=True)
    statuses = []
    for mp, ma in zip(msgs_pure, msgs_accel):
        rp = pure.apply(mp)
        ra = accel.apply(ma)
        assert rp == ra
        statuses.append(ra.status)
        if rp.status is BookStatus.BAD_LEVEL:
            assert "12a.5" in ra.reason
            # resync both from the same snapshot and carry on
            snap = BookData(
                "books",
                "X-Y",
                "snapshot",
                [lv[:] for lv in msgs_pure[0].asks],
                [lv[:] for lv in msgs_pure[0].bids],
                1,
                mp.seqId,
                -1,
                0,
            )
            assert pure.apply(snap) == accel.apply(dataclasses_copy(snap))
            assert _state(pure) == _state(accel)
    assert BookStatus.BAD_LEVEL in statuses and BookStatus.APPLIED in statuses


def dataclasses_copy(m: BookData) -> BookData:
    return BookData(
        m.channel,
        m.instId,
        m.action,
        [lv[:] for lv in m.asks],
        [lv[:] for lv in m.bids],
        m.ts,
        m.seqId,
        m.prevSeqId,
        m.checksum,
    )


@needs_ext
@pytest.mark.parametrize(
    "level, exc",
    [
        (["abc", "1"], ValueError),  # float() refuses the price
        (["", "1"], ValueError),
        (["100", 5], TypeError),  # size not a string
        (["100", None], TypeError),
        (["100"], IndexError),  # too short: both loops let IndexError through
        ([["100"], "1"], TypeError),  # unhashable price
    ],
)
def test_bad_level_raises_like_the_pure_loop(level, exc):
    def run(book_cls):
        book = book_cls("books", "X-Y")
        book.apply(
            BookData(
                "books",
                "X-Y",
                "snapshot",
                [["101", "1", "0", "1"]],
                [["99", "1", "0", "1"]],
                1,
                1,
                -1,
                0,
            )
        )
        try:
            result = book.apply(BookData("books", "X-Y", "update", [], [list(level)], 2, 2, 1, 0))
        except exc as e:
            return type(e)
        return result.status, book.valid

    pure, accel = run(PureBook), run(AccelBook)
    assert pure == accel
    if exc is IndexError:
        assert accel is IndexError
    else:  # ValueError / TypeError: caught by the book, which invalidates itself
        assert accel == (BookStatus.BAD_LEVEL, False)


@needs_ext
def test_apply_side_direct_semantics():
    """The documented rules, on the raw structures: zero spellings delete, unknown deletes are
    ignored, a re-spelt price replaces the held level and keeps the new string, cap trims."""
    f = _bookaccel.apply_side
    lv, kf, keys, pxs = {}, {}, [], []
    a, b, c = ["100.5", "1"], ["99", "2"], ["101", "3"]
    f([a, b, c], lv, kf, keys, pxs, False, 400, 1600)
    assert keys == [99.0, 100.5, 101.0] and pxs == ["99", "100.5", "101"]
    f([["99.0", "7"]], lv, kf, keys, pxs, False, 400, 1600)  # re-spelt: replaces
    assert pxs == ["99.0", "100.5", "101"] and lv["99.0"] == ["99.0", "7"] and "99" not in lv
    f([["100.50", "0.000"], ["55", "0"]], lv, kf, keys, pxs, False, 400, 1600)  # by value; unknown
    assert pxs == ["99.0", "101"] and set(lv) == {"99.0", "101"}
    f([["98", "1"], ["97", "1"]], lv, kf, keys, pxs, False, 2, 1600)  # cap 2 keeps the best
    assert pxs == ["97", "98"] and keys == [97.0, 98.0] and set(lv) == {"97", "98"}
    # bids: negated keys, best (highest) first
    blv, bkf, bkeys, bpxs = {}, {}, [], []
    f([["1", "1"], ["3", "1"], ["2", "1"]], blv, bkf, bkeys, bpxs, True, 400, 1600)
    assert bpxs == ["3", "2", "1"] and bkeys == [-3.0, -2.0, -1.0]
    # kf is a bounded cache: past kf_cap it is rebuilt from the held prices
    f([[str(p), "0"] for p in range(500, 520)], blv, bkf, bkeys, bpxs, True, 400, 10)
    assert set(bkf) == {"1", "2", "3"}
    with pytest.raises(RuntimeError):
        f([], {}, {}, [1.0], [], False, 400, 1600)  # keys/pxs out of step: refused, no crash
    with pytest.raises(TypeError):
        f([], [], {}, [], [], False, 400, 1600)


# ----- switching and fallback ----------------------------------------------------------------


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_okx_book_pure_forces_the_fallback():
    """OKX_BOOK_PURE=1 reaches the book through the feeder's settings, which the CLI applies."""
    code = (
        "import argparse, okx.book as b\n"
        "from collector.cli import _load_settings\n"
        "s = _load_settings(argparse.Namespace())\n"
        "print(s.book_pure, b.ACCELERATED, b.OrderBook._accel_side)\n"
    )
    r = _python(code, OKX_BOOK_PURE="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True False None"


def test_importing_the_book_reads_no_environment():
    r = _python(
        "import okx.book as b; print(b.ACCELERATED is (b.compiled_side is not None))",
        OKX_BOOK_PURE="1",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_use_pure_python_switches_every_book_and_back():
    saved = OrderBook._accel_side
    try:
        book_module.use_pure_python()
        assert book_module.ACCELERATED is False and OrderBook._accel_side is None
        book_module.use_pure_python(False)
        assert OrderBook._accel_side is book_module.compiled_side
        assert book_module.ACCELERATED is (book_module.compiled_side is not None)
    finally:
        OrderBook._accel_side = saved
        book_module.ACCELERATED = saved is not None


def test_book_works_without_the_extension():
    code = (
        "import sys; sys.modules['okx._bookaccel'] = None\n"  # import fails as if not built
        "import okx.book as b\n"
        "from okx.records import BookData\n"
        "assert b.ACCELERATED is False and b.OrderBook._accel_side is None\n"
        "book = b.OrderBook('books', 'X')\n"
        "book.apply(BookData('books', 'X', 'snapshot', [['2', '1']], [['1', '1']], 1, 1, -1, 0))\n"
        "r = book.apply(BookData('books', 'X', 'update', [['2.0', '5']], [['1', '0']], 2, 2, 1, 0))\n"
        "print(r.status, book.top())\n"
    )
    r = _python(code, OKX_BOOK_PURE="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "applied ([], [['2.0', '5']])"


def test_book_suite_passes_with_the_pure_loop():
    """tests/test_book.py once more, in a subprocess on the pure loop (about a second): the
    process's book switch is thrown as the feeder's OKX_BOOK_PURE=1 throws it, before the run."""
    code = (
        "import sys, pytest, okx.book as b\n"
        "b.use_pure_python()\n"
        "assert b.ACCELERATED is False and b.OrderBook._accel_side is None\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/test_book.py']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OKX_BOOK_PURE": "1"},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
