"""okx.book / okx.checksum: pure order-book state, seqId rules, checksum, REST bootstrap."""

from __future__ import annotations

import random

import pytest

from okx.book import BookInvalid, BookResult, BookStatus, OrderBook
from okx.checksum import checksum_string, okx_checksum
from okx.records import BookData

S = BookStatus


def lv(px: str, sz: str, count: str = "1") -> list:
    return [px, sz, "0", count]


def msg(action, bids=(), asks=(), seq=None, prev=None, cs=None, ts=1, channel="books"):
    return BookData(
        channel,
        "BTC-USDT",
        action,
        [list(x) for x in asks],
        [list(x) for x in bids],
        ts,
        seq,
        prev,
        cs,
    )


def snap(bids, asks, seq=10, cs=None, ts=1):
    return msg("snapshot", bids, asks, seq=seq, prev=-1, cs=cs, ts=ts)


def upd(prev, seq, bids=(), asks=(), cs=None, ts=2):
    return msg("update", bids, asks, seq=seq, prev=prev, cs=cs, ts=ts)


def prices(levels):
    return [x[0] for x in levels]


BIDS = [lv("100", "1"), lv("99.5", "2"), lv("99", "3")]
ASKS = [lv("101", "4"), lv("101.5", "5"), lv("102", "6")]


def fresh_book(**kw) -> OrderBook:
    book = OrderBook("books", "BTC-USDT", **kw)
    assert book.apply(snap(BIDS, ASKS, seq=10)).status is S.SNAPSHOT
    return book


# ----- checksum ---------------------------------------------------------------------------------

DOC_BIDS = [["3366.1", "7"], ["3366", "6"]]
DOC_ASKS = [["3366.8", "9"], ["3368", "8"]]
DOC_ASKS3 = [["3366.8", "9"], ["3368", "8"], ["3372", "8"]]


def test_checksum_doc_vectors():
    assert checksum_string(DOC_BIDS, DOC_ASKS) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert okx_checksum(DOC_BIDS, DOC_ASKS) == -1881014294
    assert checksum_string(DOC_BIDS[:1], DOC_ASKS3) == "3366.1:7:3366.8:9:3368:8:3372:8"
    assert okx_checksum(DOC_BIDS[:1], DOC_ASKS3) == 831078360
    # the shorter side may be either one
    assert checksum_string(DOC_ASKS3, DOC_BIDS[:1]) == "3366.8:9:3366.1:7:3368:8:3372:8"


def test_checksum_uses_only_25_levels_and_exact_strings():
    bids = [[f"{1000 - i}", "1.0"] for i in range(30)]
    asks = [[f"{2000 + i}", "2"] for i in range(30)]
    s = checksum_string(bids, asks)
    assert s.count(":") == 25 * 4 - 1
    assert s.startswith("1000:1.0:2000:2:999:1.0:")  # "1.0" kept, not normalised
    assert okx_checksum(bids, asks) == okx_checksum(bids[:25], asks[:25])


def test_book_verifies_doc_vectors_on_snapshot_and_update():
    book = OrderBook("books", "X")
    r = book.apply(snap([lv(*x) for x in DOC_BIDS], [lv(*x) for x in DOC_ASKS], cs=-1881014294))
    assert r == BookResult(S.SNAPSHOT, True, None)
    # delete bid 3366 and add ask 3372 -> the second doc vector
    r = book.apply(upd(10, 11, bids=[lv("3366", "0")], asks=[lv("3372", "8")], cs=831078360))
    assert r.status is S.APPLIED and r.checksum_verified
    assert book.checksum() == 831078360


def test_checksum_zero_or_absent_is_not_verified():
    book = fresh_book()
    for cs in (0, None):
        r = book.apply(upd(book.seq_id, book.seq_id + 1, bids=[lv("98", "1")], cs=cs))
        assert r.status is S.APPLIED and not r.checksum_verified and book.valid


def test_one_level_corruption_detected():
    book = fresh_book()
    bids, asks = book.top()
    r = book.apply(
        upd(10, 11, bids=[lv("99", "7")], cs=okx_checksum([bids[0], bids[1], lv("99", "7")], asks))
    )
    assert r.checksum_verified and r.status is S.APPLIED
    # The sender's book differs from ours by one level (it still has 99.5 at size "2.5").
    theirs = [bids[0], lv("99.5", "2.5"), lv("99", "8")]
    r = book.apply(upd(11, 12, bids=[lv("99", "8")], cs=okx_checksum(theirs, asks)))
    assert r.status is S.CHECKSUM_MISMATCH and not r.checksum_verified
    assert "checksum" in r.reason and not book.valid
    with pytest.raises(BookInvalid):
        book.top()


def test_checksum_ignored_when_verification_disabled():
    book = fresh_book(verify_checksum=False)
    r = book.apply(upd(10, 11, bids=[lv("98", "1")], cs=12345))
    assert r.status is S.APPLIED and not r.checksum_verified and book.valid


# ----- sequence rules ---------------------------------------------------------------------------


def test_docs_sequence_and_gap():
    book = OrderBook("books", "X")
    assert book.apply(snap(BIDS, ASKS, seq=10)).status is S.SNAPSHOT
    assert book.apply(upd(10, 15, bids=[lv("98", "1")])).status is S.APPLIED
    assert book.apply(upd(15, 15)).status is S.HEARTBEAT
    assert book.apply(upd(15, 3, asks=[lv("103", "1")])).status is S.RESET
    assert book.seq_id == 3
    assert book.apply(upd(3, 5, asks=[lv("104", "1")])).status is S.APPLIED
    assert book.seq_id == 5 and book.valid
    assert prices(book.top()[1]) == ["101", "101.5", "102", "103", "104"]
    r = book.apply(upd(7, 9, bids=[lv("97", "1")]))
    assert r.status is S.GAP and not r.ok
    assert "prevSeqId 7" in r.reason and "5" in r.reason
    assert not book.valid and book.reason == r.reason


def test_update_before_snapshot_is_gap_then_dropped():
    book = OrderBook("books", "X")
    assert not book.valid
    r = book.apply(upd(10, 11, bids=[lv("98", "1")]))
    assert r.status is S.GAP and "before any snapshot" in r.reason
    assert book.apply(upd(11, 12)).status is S.DROPPED_INVALID
    with pytest.raises(BookInvalid):
        book.top()
    with pytest.raises(BookInvalid):
        book.seq_id


def test_invalid_book_drops_updates_until_new_snapshot():
    book = fresh_book()
    assert book.apply(upd(11, 12, bids=[lv("98", "1")])).status is S.GAP
    r = book.apply(upd(12, 13, bids=[lv("97", "1")]))
    assert r.status is S.DROPPED_INVALID and r.reason == book.reason
    # even an update that would chain onto the gap's seqId is dropped
    assert book.apply(upd(10, 11)).status is S.DROPPED_INVALID
    assert book.apply(snap([lv("50", "1")], [lv("60", "1")], seq=40, ts=9)).status is S.SNAPSHOT
    assert book.valid and book.reason is None and book.seq_id == 40 and book.ts == 9
    assert book.top() == ([lv("50", "1")], [lv("60", "1")])
    assert book.apply(upd(40, 41, bids=[lv("55", "1")])).status is S.APPLIED


def test_heartbeat_with_unchanged_book_and_ts():
    book = fresh_book()
    before = book.top()
    r = book.apply(upd(10, 10, ts=77))
    assert r.status is S.HEARTBEAT and book.top() == before and book.ts == 77


# ----- applying levels --------------------------------------------------------------------------


def test_update_sets_absolute_sizes_inserts_and_deletes():
    book = fresh_book()
    r = book.apply(
        upd(
            10,
            11,
            bids=[lv("99.5", "20"), lv("99", "0"), lv("99.8", "1")],
            asks=[lv("101", "0"), lv("100.5", "3")],
        )
    )
    assert r.status is S.APPLIED
    bids, asks = book.top()
    assert bids == [lv("100", "1"), lv("99.8", "1"), lv("99.5", "20")]
    assert asks == [lv("100.5", "3"), lv("101.5", "5"), lv("102", "6")]


def test_delete_of_unknown_price_ignored():
    book = fresh_book()
    before = book.top()
    r = book.apply(upd(10, 11, bids=[lv("99.7", "0"), lv("1", "0")], asks=[lv("101.2", "0")]))
    assert r.status is S.APPLIED and book.valid
    assert book.top() == before


def test_zero_size_spellings_delete():
    book = fresh_book()
    book.apply(upd(10, 11, bids=[lv("100", "0.000")], asks=[lv("101", "0.0")]))
    bids, asks = book.top()
    assert prices(bids) == ["99.5", "99"] and prices(asks) == ["101.5", "102"]
    # sizes that merely start with 0 are not deletes
    book.apply(upd(11, 12, bids=[lv("99.5", "0.01")]))
    assert book.top()[0][0] == lv("99.5", "0.01")


def test_levels_keyed_by_value_but_keep_original_strings():
    book = fresh_book()
    # "100.0" is the same price as "100": it replaces that level, with the new spelling
    book.apply(upd(10, 11, bids=[lv("100.0", "9")]))
    bids, _ = book.top()
    assert bids[0] == lv("100.0", "9") and len(bids) == 3
    # a delete spelt "100.00" removes it
    book.apply(upd(11, 12, bids=[lv("100.00", "0")]))
    assert prices(book.top()[0]) == ["99.5", "99"]


def test_top_orders_by_value_not_string():
    book = OrderBook("books", "X")
    book.apply(
        snap(
            [lv("9.5", "1"), lv("10.25", "1"), lv("100", "1"), lv("9.75", "1")],
            [lv("1000", "1"), lv("200.5", "1"), lv("1000.5", "1"), lv("999", "1")],
        )
    )
    bids, asks = book.top()
    assert prices(bids) == ["100", "10.25", "9.75", "9.5"]
    assert prices(asks) == ["200.5", "999", "1000", "1000.5"]
    book.apply(
        upd(10, 11, bids=[lv("10", "1"), lv("9.6", "1")], asks=[lv("99999", "1"), lv("201", "1")])
    )
    bids, asks = book.top(3)
    assert prices(bids) == ["100", "10.25", "10"]
    assert prices(asks) == ["200.5", "201", "999"]
    assert prices(book.top()[0]) == ["100", "10.25", "10", "9.75", "9.6", "9.5"]
    assert book.sizes() == (6, 6)


def test_depth_cap_truncates_worst_levels():
    book = OrderBook("books50-l2-tbt", "X", depth=3)
    book.apply(
        snap([lv(str(100 - i), "1") for i in range(5)], [lv(str(200 + i), "1") for i in range(5)])
    )
    assert prices(book.top()[0]) == ["100", "99", "98"]
    assert prices(book.top()[1]) == ["200", "201", "202"]
    book.apply(upd(10, 11, bids=[lv("99.5", "1")], asks=[lv("199", "1")]))
    assert prices(book.top()[0]) == ["100", "99.5", "99"]
    assert prices(book.top()[1]) == ["199", "200", "201"]


def test_crossed_book_detected():
    book = fresh_book()
    r = book.apply(upd(10, 11, bids=[lv("101", "1")]))  # bid equals best ask
    assert r.status is S.CROSSED and "101" in r.reason and not book.valid
    assert book.apply(upd(11, 12)).status is S.DROPPED_INVALID
    # a crossed snapshot too
    book = OrderBook("books", "X")
    assert book.apply(snap([lv("102", "1")], [lv("101", "1")])).status is S.CROSSED


def test_crossed_allowed_for_call_auctions():
    book = fresh_book(allow_crossed=True)
    r = book.apply(upd(10, 11, bids=[lv("101.5", "1")]))
    assert r.status is S.APPLIED and book.valid
    assert book.top(1) == ([lv("101.5", "1")], [lv("101", "4")])


def test_books5_and_bbo_replace_whole_book():
    for channel in ("books5", "bbo-tbt"):
        book = OrderBook(channel, "X")
        r = book.apply(msg(None, BIDS, ASKS, seq=100, channel=channel))
        assert r.status is S.SNAPSHOT
        r = book.apply(
            msg(None, [lv("99.9", "1")], [lv("100.1", "2")], seq=103, ts=5, channel=channel)
        )
        assert r.status is S.SNAPSHOT
        assert book.top() == ([lv("99.9", "1")], [lv("100.1", "2")])
        assert book.seq_id == 103 and book.ts == 5


def test_pushed_books_kept_as_received_only_when_in_order():
    # In-order pushes are kept as received; anything else takes the general path, which
    # sorts, drops zero sizes and de-duplicates values. Both must read the same.
    general = OrderBook("books", "X")
    cases = [
        ([lv("100", "1"), lv("99", "2")], [lv("101", "3"), lv("102", "4")]),  # in order
        ([lv("99", "2"), lv("100", "1")], [lv("102", "4"), lv("101", "3")]),  # reversed
        ([lv("100", "1"), lv("99", "0")], [lv("101", "0.00"), lv("102", "4")]),  # zero sizes
        ([lv("100", "1"), lv("100.0", "2")], [lv("101", "3")]),  # same value twice
        ([], [lv("101", "3")]),  # one side empty
    ]
    for bids, asks in cases:
        book = OrderBook("books5", "X")
        assert book.apply(msg(None, bids, asks, seq=7, channel="books5")).status is S.SNAPSHOT
        assert general.apply(snap(bids, asks, seq=7)).status is S.SNAPSHOT
        assert book.top() == general.top()
        assert book.top(1) == general.top(1)
        assert book.sizes() == general.sizes()
        assert book.checksum() == general.checksum()
        assert book.view(1) == (1, 7, *general.top(1))


def test_pushed_book_crossed_and_checksum_still_checked():
    book = OrderBook("bbo-tbt", "X")
    r = book.apply(msg(None, [lv("101", "1")], [lv("100.5", "1")], seq=1, channel="bbo-tbt"))
    assert r.status is S.CROSSED and "101" in r.reason and not book.valid
    with pytest.raises(BookInvalid):
        book.top()
    r = book.apply(msg(None, [lv("100", "1")], [lv("101", "1")], seq=2, channel="bbo-tbt"))
    assert r.status is S.SNAPSHOT and book.valid
    good = okx_checksum([lv("100", "1")], [lv("101", "1")])
    r = book.apply(msg(None, [lv("100", "1")], [lv("101", "1")], seq=3, cs=good, channel="bbo-tbt"))
    assert r.status is S.SNAPSHOT and r.checksum_verified
    r = book.apply(
        msg(None, [lv("100", "1")], [lv("101", "1")], seq=4, cs=good + 1, channel="bbo-tbt")
    )
    assert r.status is S.CHECKSUM_MISMATCH and not book.valid


# ----- REST bootstrap ---------------------------------------------------------------------------

REST_BIDS = [lv("100", "1"), lv("99", "1")]
REST_ASKS = [lv("101", "1"), lv("102", "1")]


def bootstrapping_book(**kw) -> OrderBook:
    book = OrderBook("books", "X", **kw)
    book.begin_bootstrap()
    assert book.bootstrapping and not book.valid
    return book


def test_bootstrap_buffers_then_splices():
    book = bootstrapping_book()
    assert book.apply(upd(100, 105, bids=[lv("98", "1")])).status is S.BUFFERED
    assert book.apply(upd(105, 110, bids=[lv("97", "1")])).status is S.BUFFERED
    assert book.apply(upd(110, 120, asks=[lv("103", "1")])).status is S.BUFFERED
    assert book.buffered == 3
    with pytest.raises(BookInvalid):
        book.top()
    # snapshot at 107 already contains 100->105 (its level "98" must not be applied)
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 107, ts=50)
    assert r.status is S.SNAPSHOT and book.valid and not book.bootstrapping
    assert book.seq_id == 120 and book.buffered == 0
    bids, asks = book.top()
    assert prices(bids) == ["100", "99", "97"]
    assert prices(asks) == ["101", "102", "103"]
    assert book.apply(upd(120, 120)).status is S.HEARTBEAT
    assert book.apply(upd(120, 125, bids=[lv("96", "1")])).status is S.APPLIED


def test_bootstrap_snapshot_older_than_buffer_needs_newer():
    book = bootstrapping_book()
    book.apply(upd(100, 105, bids=[lv("98", "1")]))
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 99, 1)
    assert r.status is S.NEED_SNAPSHOT and "99" in r.reason
    assert book.bootstrapping and book.buffered == 1 and not book.valid
    # a newer snapshot that satisfies prevSeqId <= snapSeq < seqId works
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 100, 1)
    assert r.status is S.SNAPSHOT and book.seq_id == 105
    assert prices(book.top()[0]) == ["100", "99", "98"]


def test_bootstrap_hole_after_snapshot_needs_newer():
    book = bootstrapping_book()
    book.apply(upd(100, 105))
    book.apply(upd(108, 112, bids=[lv("98", "1")]))  # 105 -> 108 never arrived
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 106, 1)
    assert r.status is S.NEED_SNAPSHOT and "hole" in r.reason
    assert book.bootstrapping and book.buffered == 1
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 110, 1)
    assert r.status is S.SNAPSHOT and book.seq_id == 112


def test_bootstrap_gap_inside_buffer_restarts_from_the_gap():
    book = bootstrapping_book()
    book.apply(upd(100, 105))
    book.apply(upd(105, 110))
    book.apply(upd(115, 120))  # 110 -> 115 missing
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 102, 1)
    assert r.status is S.NEED_SNAPSHOT and "gap inside buffered" in r.reason
    assert book.bootstrapping and book.buffered == 1
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 117, 1).status is S.SNAPSHOT
    assert book.seq_id == 120


def test_bootstrap_with_nothing_buffered():
    book = bootstrapping_book()
    r = book.offer_snapshot(REST_ASKS, REST_BIDS, 200, ts=5)
    assert r.status is S.SNAPSHOT and book.valid and book.seq_id == 200
    assert book.top() == (REST_BIDS, REST_ASKS)
    # updates already contained in the snapshot are skipped, not gaps
    assert book.apply(upd(190, 195, bids=[lv("98", "1")])).status is S.STALE
    assert book.apply(upd(195, 200, bids=[lv("98", "1")])).status is S.STALE
    assert prices(book.top()[0]) == ["100", "99"]
    # first chained update: prevSeqId <= 200 < seqId (200 itself never appeared in the stream)
    assert book.apply(upd(198, 204, bids=[lv("97", "1")])).status is S.APPLIED
    assert book.seq_id == 204
    assert book.apply(upd(204, 206)).status is S.APPLIED
    assert book.apply(upd(205, 207)).status is S.GAP  # normal chaining from here


def test_bootstrap_heartbeat_at_snapshot_seq():
    book = bootstrapping_book()
    book.offer_snapshot(REST_ASKS, REST_BIDS, 200, 1)
    assert book.apply(upd(200, 200)).status is S.HEARTBEAT
    assert book.apply(upd(200, 201)).status is S.APPLIED


def test_bootstrap_hole_after_unbuffered_snapshot():
    book = bootstrapping_book()
    book.offer_snapshot(REST_ASKS, REST_BIDS, 200, 1)
    r = book.apply(upd(203, 206, bids=[lv("98", "1")]))
    assert r.status is S.NEED_SNAPSHOT and "hole" in r.reason
    assert book.bootstrapping and book.buffered == 1 and not book.valid
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 204, 1).status is S.SNAPSHOT
    assert book.seq_id == 206 and prices(book.top()[0]) == ["100", "99", "98"]


def test_bootstrap_buffer_overflow_starts_over():
    book = bootstrapping_book(max_buffer=3)
    for i in range(3):
        assert book.apply(upd(100 + i, 101 + i)).status is S.BUFFERED
    r = book.apply(upd(103, 104, bids=[lv("98", "1")]))
    assert r.status is S.BUFFER_OVERFLOW and "3" in r.reason
    assert book.bootstrapping and book.buffered == 1
    # a snapshot taken before the restart is now too old
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 101, 1).status is S.NEED_SNAPSHOT
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 103, 1).status is S.SNAPSHOT
    assert book.seq_id == 104


def test_ws_snapshot_while_bootstrapping_is_taken():
    book = bootstrapping_book()
    book.apply(upd(100, 105))
    assert book.apply(snap(BIDS, ASKS, seq=300)).status is S.SNAPSHOT
    assert book.valid and not book.bootstrapping and book.buffered == 0
    assert book.apply(upd(300, 301)).status is S.APPLIED


def test_seq_reset_while_bootstrapping_bumps_epoch():
    book = bootstrapping_book()
    epoch = book.epoch
    book.apply(upd(100, 105))
    r = book.apply(upd(105, 3))
    assert r.status is S.NEED_SNAPSHOT and "reset" in r.reason
    assert book.epoch == epoch + 1 and book.buffered == 0
    book.apply(upd(3, 6))
    # a snapshot requested before the reset is refused when its epoch is passed back
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 150, 1, epoch=epoch).status is S.NEED_SNAPSHOT
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 4, 1, epoch=book.epoch).status is S.SNAPSHOT
    assert book.seq_id == 6


def test_offer_snapshot_recovers_an_invalid_book():
    book = fresh_book()
    book.apply(upd(50, 60))
    assert not book.valid
    assert book.offer_snapshot(REST_ASKS, REST_BIDS, 70, 1).status is S.SNAPSHOT
    assert book.apply(upd(69, 72)).status is S.APPLIED and book.valid


# ----- randomised cross-check against a naive model ---------------------------------------------


def test_random_stream_matches_naive_model():
    rng = random.Random(3)
    ref_b: dict[int, list] = {}
    ref_a: dict[int, list] = {}

    def px(t: int) -> str:  # prices of varying string length: 0.5 .. 2000.0
        return f"{t // 2}" if t % 2 == 0 else f"{t // 2}.5"

    for t in range(900, 1000):
        ref_b[t] = lv(px(t), str(rng.randint(1, 9)))
    for t in range(1001, 1100):
        ref_a[t] = lv(px(t), f"0.{rng.randint(1, 9)}")

    def truth():
        return ([ref_b[t] for t in sorted(ref_b, reverse=True)], [ref_a[t] for t in sorted(ref_a)])

    book = OrderBook("books", "X", depth=None)
    b, a = truth()
    assert book.apply(snap(b, a, seq=0, cs=okx_checksum(b, a))).checksum_verified
    for seq in range(1, 400):
        changes_b, changes_a = {}, {}
        for _ in range(rng.randint(0, 12)):
            bid = rng.random() < 0.5
            ref, ch = (ref_b, changes_b) if bid else (ref_a, changes_a)
            best_b = max(ref_b) if ref_b else 1
            best_a = min(ref_a) if ref_a else 3999
            t = rng.randint(2, best_a - 1) if bid else rng.randint(best_b + 1, 3998)
            if bid and t >= best_a or not bid and t <= best_b:
                continue
            if rng.random() < 0.4:
                ch[t] = lv(px(t), "0")
                ref.pop(t, None)
            else:
                ch[t] = lv(px(t), str(rng.randint(1, 50)))
                ref[t] = ch[t]
        b, a = truth()
        r = book.apply(
            upd(
                seq - 1,
                seq,
                list(changes_b.values()),
                list(changes_a.values()),
                cs=okx_checksum(b, a),
            )
        )
        assert r.status in (S.APPLIED, S.HEARTBEAT) and r.checksum_verified, r
        assert book.top() == (b, a)


def test_legacy_stream_without_seq_ids():
    book = OrderBook("books", "X")
    assert book.apply(msg("snapshot", BIDS, ASKS)).status is S.SNAPSHOT
    assert book.apply(msg("update", [lv("98", "1")])).status is S.APPLIED
    assert prices(book.top()[0]) == ["100", "99.5", "99", "98"]
    # once the book has a seqId, an update without prevSeqId is a gap
    book.apply(snap(BIDS, ASKS, seq=10))
    assert book.apply(msg("update", [lv("98", "1")], seq=11)).status is S.GAP


def test_result_ok_flag():
    assert BookResult(S.APPLIED).ok and BookResult(S.STALE).ok
    assert not BookResult(S.GAP).ok and not BookResult(S.BUFFERED).ok


def test_an_unusable_price_invalidates_the_book_instead_of_raising():
    for bad in (lv("abc", "1"), lv("", "1")):
        book = fresh_book()
        res = book.apply(upd(10, 11, bids=[lv("99.7", "1"), bad]))
        assert res.status is S.BAD_LEVEL and not book.valid and "seqId 11" in res.reason
        with pytest.raises(BookInvalid):
            book.top(5)
        # a snapshot repairs it, as after any other failure
        assert book.apply(snap(BIDS, ASKS, seq=20)).status is S.SNAPSHOT and book.valid
