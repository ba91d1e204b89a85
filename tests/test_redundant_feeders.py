"""Issue #19's acceptance, short: bench/redundant.py's run with real processes (okxsim,
redis-server, the MongoDB wire-protocol server, a Celery worker, RedBeat beat and two feeders of
one shard on nine instruments with books, books5, trades-all, tickers and orders).

90 s of SIGKILLs every 15 s, in turn, the other feeder always up: nothing may be missing,
duplicated or invented, no window the other feeder covered may cost a REST call or end
unrepairable. The second run also takes both feeders down together for 10 s once: exactly that
window is a gap, its trades (and orders) are backfilled, its books and tickers are unrepairable
with bounds inside it. Every check and its tolerance: docs/redundancy-acceptance.md.
"""

from __future__ import annotations

import orjson
import pytest

from bench.redundant import Result, run

pytestmark = pytest.mark.integration

MINUTES = 1.5
KILL_EVERY_S = 15.0
SETTLE_S = 40.0


def _verdict(result: Result) -> str:
    figures = orjson.dumps(result.figures, option=orjson.OPT_NON_STR_KEYS).decode()
    return "\n".join(["failed: " + "; ".join(result.failed()), result.table(), figures])


def test_two_feeders_killed_in_turn_lose_nothing(tmp_path):
    result = run(minutes=MINUTES, kill_every=KILL_EVERY_S, settle_s=SETTLE_S, workdir=tmp_path)
    print("\n" + result.table())
    assert result.figures["kills"] >= 5, result.figures  # the schedule ran: 90 s / 15 s
    assert result.figures["trades_compared"] > 0 and result.figures["order_events_compared"] > 0
    assert result.ok, _verdict(result)


def test_both_feeders_down_together_leave_exactly_that_gap(tmp_path):
    result = run(
        minutes=MINUTES,
        kill_every=KILL_EVERY_S,
        both_down=10.0,
        settle_s=SETTLE_S,
        workdir=tmp_path,
    )
    print("\n" + result.table())
    down = result.figures["both_down"]
    assert down is not None and down["s"] >= 10.0, result.figures
    assert result.ok, _verdict(result)
