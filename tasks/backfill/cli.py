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
status) is visible there like any other gap. A run that fails (MongoDB or OKX unreachable, OKX
refusing, Ctrl-C) marks its gap `failed` with the reason, which the beat sweep retries with
backoff and `repair GAP_ID` retries at once; the command says so in one line on stderr.
Exit status: 0 filled (or unrepairable with a reason), 1 failed or a service unreachable,
2 bad arguments or settings, 130 interrupted (core/cli_errors.py: every command's policy).
Settings and credentials come from the environment, read by core/settings.py (WorkerSettings).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from core.cli_errors import (
    EXIT_CODES_EPILOG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    describe,
    redacted_traceback,
    report,
    run_cli,
    worker_targets,
)
from core.contract import BACKFILL_QUEUE, BACKFILL_TASK
from okx.clock import now_ms

PROG = "python -m tasks.backfill"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Backfill OKX data from REST (docs/backfill.md)",
        epilog=EXIT_CODES_EPILOG,
    )
    p.add_argument(
        "--log-level",
        default="ERROR",
        help="log lines shown on stderr: DEBUG, INFO, WARNING, ERROR (default: ERROR, the "
        "command reports a failure itself in one line)",
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


def _outcome(res: Any, records: int) -> int:
    """Print the result (stdout, one JSON line) and, unless it is done, one line on stderr."""
    out = {"gap": res.gap_id, "status": res.status, "reason": res.reason, "records": records}
    if res.status == "failed":
        out["retry_at_ms"] = res.retry_at_ms
    print(orjson.dumps(out).decode(), flush=True)
    if res.status in ("filled", "unrepairable"):
        return EXIT_OK
    if res.status == "failed":
        verdict = describe(res.error, worker_targets()) if res.error is not None else None
        if verdict is None and res.error is not None:  # not an operator error: a bug, shown
            print(redacted_traceback(res.error), end="", file=sys.stderr)
        why = verdict[1] if verdict else res.reason
        report(
            PROG,
            f"gap {res.gap_id} failed: {why}; the beat sweep retries it, "
            f"`{PROG} repair {res.gap_id}` retries it now",
        )
    else:
        report(PROG, f"gap {res.gap_id} not repaired ({res.status}): {res.reason}")
    return EXIT_FAILURE


def _repair(gap_id: str, show: bool, repairer: Any = None) -> int:
    """Repair one gap here; a failure leaves it `failed` with the reason (never open)."""
    from tasks.backfill import context
    from tasks.backfill.tasks import make_repairer

    gap = context.ledger().get(gap_id)
    if not gap:
        report(PROG, f"no gap {gap_id} in the ledger (`{PROG} gaps --all` lists them)")
        return EXIT_USAGE
    repairer = repairer or make_repairer()
    progress = Progress(gap, show)
    repairer.on_page = progress
    try:
        res = repairer.run(gap_id, owner=f"cli:{time.time_ns()}", fail=True)
    except KeyboardInterrupt:
        progress.close(False)
        report(
            PROG,
            f"interrupted: gap {gap_id} is marked failed with its cursor saved; "
            f"`{PROG} repair {gap_id}` resumes it, or the beat sweep does",
        )
        return EXIT_INTERRUPTED
    progress.close(res.status == "filled")
    return _outcome(res, progress.records)


GAP_FIELDS = (
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
    "retry_at",
    "last_error",
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # usage errors: argparse's message, exit 2
    return run_cli(PROG, lambda: _dispatch(args), worker_targets, log_level=args.log_level)


def _dispatch(args: argparse.Namespace) -> int:
    from tasks.backfill import context, plan

    if args.cmd == "gaps":
        ledger = context.ledger()
        rows = ledger.recent(args.limit) if args.all else ledger.open_gaps(args.limit)
        for g in rows:
            print(orjson.dumps({k: g.get(k, "") for k in GAP_FIELDS}).decode())
        return EXIT_OK
    if args.cmd == "repair":
        return _repair(args.gap_id, not args.no_progress)
    if args.cmd == "sweep":
        from tasks.backfill.tasks import sweep

        print(orjson.dumps(sweep()).decode())
        return EXIT_OK
    if args.cmd == "audit":
        from tasks.backfill.tasks import audit

        print(orjson.dumps(audit(instId=args.instId)).decode())
        return EXIT_OK
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
            return EXIT_OK
        from tasks.backfill.tasks import create_manual_gap, make_repairer

        # The repairer (its MongoDB client) before the gap: one that cannot be built leaves none.
        repairer = make_repairer()
        gap_id = create_manual_gap(args.channel, args.instId, start, end, args.bar)
    except plan.PlanError as exc:
        report(PROG, f"error: {exc}")
        return EXIT_USAGE
    return _repair(gap_id, not args.no_progress, repairer)
