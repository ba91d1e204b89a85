"""Issue #19's acceptance, short: bench/redundant.py's run with real processes (okxsim,
redis-server, the MongoDB wire-protocol server, a Celery worker, RedBeat beat and two feeders of
one shard on five instruments (INSTRUMENTS says why not nine) with books, books5, trades-all,
tickers and orders).

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
from okxsim.config import DEFAULT_INSTRUMENTS

pytestmark = pytest.mark.integration

# Five of okxsim's nine: with nine, two feeders and a 2-process worker kept up on a quiet 2-core
# machine (settled 8 s after the schedule) but fell 600-800 ingest tasks behind while three
# other sessions ran their benches; the bench runs nine (docs/redundancy-acceptance.md).
INSTRUMENTS = DEFAULT_INSTRUMENTS[:5]
MINUTES = 1.5
KILL_EVERY_S = 15.0
SETTLE_S = 45.0  # backfill's deadline; on a quiet machine it settles in under 15 s


def _verdict(result: Result) -> str:
    figures = orjson.dumps(result.figures, option=orjson.OPT_NON_STR_KEYS).decode()
    return "\n".join(["failed: " + "; ".join(result.failed()), result.table(), figures])


def test_two_feeders_killed_in_turn_lose_nothing(tmp_path):
    result = run(
        minutes=MINUTES,
        kill_every=KILL_EVERY_S,
        settle_s=SETTLE_S,
        insts=INSTRUMENTS,
        workdir=tmp_path,
        ticker_lag_max_ms=None,  # timing is the bench's; the state moving is checked
    )
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
        insts=INSTRUMENTS,
        workdir=tmp_path,
        ticker_lag_max_ms=None,
    )
    print("\n" + result.table())
    down = result.figures["both_down"]
    assert down is not None and down["s"] >= 10.0, result.figures
    assert result.ok, _verdict(result)
