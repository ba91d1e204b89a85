"""`python -m tasks.backfill ...`: backfill from a shell, in this process, with a progress bar.

    python -m tasks.backfill run trades BTC-USDT --start 2026-11-21T10:00:00Z --end 2026-11-21T12:00:00Z
    python -m tasks.backfill run candles BTC-USDT --bar 1m --start ... --end ...
    python -m tasks.backfill run orders --start ... --end ...        (orders + fills, all instTypes)
    python -m tasks.backfill run balances                              (REST snapshot now)
    python -m tasks.backfill run trades BTC-USDT --start ... --end ... --enqueue   (to the workers)
    python -m tasks.backfill repair GAP_ID                             (one ledger gap, here)
    python -m tasks.backfill gaps [--all]                              (open / recent gaps)
    python -m tasks.backfill sweep | audit [INSTID]                    (one beat job, here)

A run records a `manual` gap in the ledger first, so its progress (cursor, records written,
status) is visible there like any other gap, and a killed run resumes with `repair GAP_ID`.
Exit status: 0 filled (or unrepairable with a reason), 1 failed/released, 2 bad arguments.
Settings and credentials come from the environment, read by core/settings.py (WorkerSettings).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from core.contract import BACKFILL_QUEUE, BACKFILL_TASK
from okx.clock import now_ms


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tasks.backfill",
        description="Backfill OKX data from REST (docs/backfill.md)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="backfill a channel over a time range")
    run.add_argument(
        "channel",
        help="trades, trades-all, candles (with --bar), candle1m, "
        "orders, fills, balances, positions, books, tickers",
    )
    run.add_argument(
        "instId",
        nargs="?",
        default="",
        help="instrument, e.g. BTC-USDT (none for orders, fills, balances, positions)",
    )
    run.add_argument("--start", help="ISO-8601 or epoch ms (default: --end minus 1 hour)")
    run.add_argument("--end", help="ISO-8601 or epoch ms (default: now)")
    run.add_argument("--bar", default=None, help="candle bar for `candles` (default 1m)")
    run.add_argument(
        "--enqueue",
        action="store_true",
        help="send it to the workers (the `backfill` task) instead",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep = sub.add_parser("repair", help="repair one ledger gap here")
    rep.add_argument("gap_id", help="the gap's id, as `gaps` lists it")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    gaps = sub.add_parser("gaps", help="list open gaps (--all: the most recent ones)")
    gaps.add_argument("--all", action="store_true", help="recent gaps of every status")
    gaps.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    sub.add_parser("sweep", help="run the beat sweep once here")
    aud = sub.add_parser("audit", help="run the trade audit once here")
    aud.add_argument(
        "instId",
        nargs="?",
        default=None,
        help="one instrument (default: AUDIT_INSTRUMENTS, else every one with trades)",
    )
    return p


class Progress:
    """A tqdm bar over the gap's time span: each page moves it to the oldest time it reached
    (the fetchers walk from the end of the range down to its start)."""

    def __init__(self, gap: dict, enabled: bool) -> None:
        from tqdm import tqdm

        self.start, self.end = int(gap["start_ms"]), int(gap["end_ms"])
        span = max(1, (self.end - self.start) // 1000)
        self.bar = tqdm(
            total=span,
            unit="s",
            disable=not enabled,
            desc=f"gap {gap['id']} {gap['channel']} {gap['instId']}".strip(),
        )
        self.records = 0

    def __call__(self, step: Any, page: Any, written: int) -> None:
        self.records += written
        times = [int(r.get("ts") or r.get("cTime") or 0) for r in page.records]
        times = [t for t in times if t]
        if times:
            done = max(0, min(self.bar.total, (self.end - min(times)) // 1000))
            self.bar.update(max(0, done - self.bar.n))
        self.bar.set_postfix(records=self.records, step=f"{step.kind} {step.key}".strip())

    def close(self, filled: bool) -> None:
        if filled:
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def _repair(gap_id: str, show: bool) -> int:
    from tasks.backfill import context
    from tasks.backfill.tasks import make_repairer

    gap = context.ledger().get(gap_id)
    if not gap:
        print(f"no gap {gap_id}", file=sys.stderr)
        return 2
    progress = Progress(gap, show)
    res = make_repairer(on_page=progress).run(gap_id, owner=f"cli:{time.time_ns()}")
    progress.close(res.status == "filled")
    print(
        orjson.dumps(
            {
                "gap": res.gap_id,
                "status": res.status,
                "reason": res.reason,
                "records": progress.records,
            }
        ).decode()
    )
    return 0 if res.status in ("filled", "unrepairable") else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tasks.backfill import context, plan

    if args.cmd == "gaps":
        ledger = context.ledger()
        rows = ledger.recent(args.limit) if args.all else ledger.open_gaps(args.limit)
        for g in rows:
            print(
                orjson.dumps(
                    {
                        k: g.get(k, "")
                        for k in (
                            "id",
                            "status",
                            "channel",
                            "instId",
                            "start_ms",
                            "end_ms",
                            "cause",
                            "reason",
                            "written",
                            "attempts",
                            "failures",
                            "last_error",
                        )
                    }
                ).decode()
            )
        return 0
    if args.cmd == "repair":
        return _repair(args.gap_id, not args.no_progress)
    if args.cmd == "sweep":
        from tasks.backfill.tasks import sweep

        print(orjson.dumps(sweep()).decode())
        return 0
    if args.cmd == "audit":
        from tasks.backfill.tasks import audit

        print(orjson.dumps(audit(instId=args.instId)).decode())
        return 0
    now = now_ms()
    try:
        end = plan.parse_time(args.end, "--end") if args.end else now
        start = plan.parse_time(args.start, "--start") if args.start else end - 3_600_000
        if args.enqueue:
            from tasks.app import app

            kwargs = {
                "channel": args.channel,
                "instId": args.instId,
                "start": start,
                "end": end,
                "bar": args.bar,
            }
            result = app.send_task(BACKFILL_TASK, kwargs=kwargs, queue=BACKFILL_QUEUE)
            print(f"sent {BACKFILL_TASK} {result.id}")
            return 0
        from tasks.backfill.tasks import create_manual_gap

        gap_id = create_manual_gap(args.channel, args.instId, start, end, args.bar)
    except plan.PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _repair(gap_id, not args.no_progress)
