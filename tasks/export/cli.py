"""`python -m tasks.export KIND INSTID --start --end --format parquet|csv --out FILE`.

Parses the command line, opens MongoDB from the workers' settings (MONGODB_URI, MONGODB_DB,
MONGODB_TIMEOUT_MS, MONGO_CLIENT_FACTORY), and runs the export under the house policy of
core/cli_errors.py: operator errors are one line on stderr and exit 2 (a bad kind, time, range,
bar or --out) or 1 (MongoDB unreachable, the disk failing mid-write); Ctrl-C is 130 and leaves
no file behind. A progress bar goes to stderr when it is a terminal (not with --quiet), its
total counted up front with count_documents on the export's own filter (only then: without a
bar nothing needs the count).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

PROG = "python -m tasks.export"


def parser() -> argparse.ArgumentParser:
    from core.cli_errors import EXIT_CODES_EPILOG
    from tasks.export.query import FORMATS, KINDS, SOURCES

    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Export stored history of one instrument to Parquet or CSV, streamed "
            "(memory stays flat with the range). The range is [start, end)."
        ),
        epilog=EXIT_CODES_EPILOG,
    )
    p.add_argument("kind", choices=KINDS, help="what to export")
    p.add_argument("inst_id", metavar="INSTID", help="OKX instId, e.g. BTC-USDT")
    p.add_argument("--start", required=True, help="epoch ms or ISO-8601 (naive = UTC), inclusive")
    p.add_argument("--end", required=True, help="epoch ms or ISO-8601 (naive = UTC), exclusive")
    p.add_argument("--format", choices=FORMATS, default="parquet", help="default parquet")
    p.add_argument("--out", required=True, help="output file; '-' writes CSV to stdout")
    p.add_argument("--bar", help="candles: OKX bar (1m, 5m, 1H, 1D, 1Dutc, ...), default 1m")
    p.add_argument("--source", choices=SOURCES, help="candles: okx (default) or trades")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar, no summary line (documents left out are still reported)",
    )
    p.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)  # bench/tests
    return p


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import run_cli, worker_targets

    args = parser().parse_args(argv)
    return run_cli(PROG, lambda: _export(args), worker_targets)


def _export(args: argparse.Namespace) -> int:
    from core import settings
    from core.cli_errors import EXIT_FAILURE, report
    from core.errors import PlanError
    from tasks.export.query import COLLECTION, make_request

    req = make_request(
        args.kind, args.inst_id, args.start, args.end, bar=args.bar, source=args.source
    )
    if args.out == "-" and args.format != "csv":
        raise PlanError("--out - (stdout) is for CSV only: Parquet is written with a footer")
    if args.batch_size is not None and args.batch_size < 1:
        raise PlanError("--batch-size must be at least 1")
    s = settings.current()
    client = open_client(s)
    try:
        collection = client[s.mongodb_db][COLLECTION[req.kind]]
        try:
            result = _write(args, req, collection)
        except BrokenPipeError:  # `| head`: the reader left; say so once, without a traceback
            _silence_stdout()
            report(PROG, "stdout was closed before the export ended")
            return EXIT_FAILURE
        except OSError as exc:  # the disk failing mid-write (full, gone): a runtime failure
            report(PROG, f"cannot write {args.out}: {exc.strerror or exc}")
            return EXIT_FAILURE
    finally:
        client.close()
    if not args.quiet or result.rejected:  # left-out documents are said even with --quiet
        where = "stdout" if args.out == "-" else args.out
        line = f"{result.rows} {req.kind} rows of {req.inst_id} written to {where}"
        if result.rejected:
            line += (
                f"; {result.rejected} documents left out (do not fit their columns), "
                f"first: {result.reasons[0]}"
            )
        report(PROG, line)
    return 0


# One server operation of an export may take long where a worker's must not: counting or
# sorting a big range on a slow server (nx-27017 counts 360,000 trades in ~40 s). Reaching the
# server still fails within MONGODB_TIMEOUT_MS; a server that stops answering mid-export is
# given this long per operation, and Ctrl-C ends the wait at any time.
EXPORT_SOCKET_TIMEOUT_MS = 600_000


def open_client(s: Any) -> Any:
    """The export's MongoDB client: the MONGO_CLIENT_FACTORY's when one is set (offline
    stand-ins), else pymongo's with the workers' connect timeouts and a long socket timeout."""
    from tasks.clients import make_mongo_client

    if s.mongo_client_factory:
        return make_mongo_client(s.mongodb_uri, s.mongo_timeout_ms, s.mongo_client_factory)
    from pymongo import MongoClient

    return MongoClient(
        s.mongodb_uri,
        serverSelectionTimeoutMS=s.mongo_timeout_ms,
        connectTimeoutMS=s.mongo_timeout_ms,
        socketTimeoutMS=EXPORT_SOCKET_TIMEOUT_MS,
        appname="okx-export",
    )


def _write(args: argparse.Namespace, req: Any, collection: Any) -> Any:
    from tasks.export.columns import arrow_schema
    from tasks.export.sinks import atomic_output, open_sink
    from tasks.export.stream import BATCH_DOCS

    batch = args.batch_size or BATCH_DOCS
    if args.out == "-":
        total = _total(args, req, collection)
        sink = open_sink("csv", sys.stdout.buffer, arrow_schema(req.kind))
        return _run(args, req, collection, sink, total, batch)
    with atomic_output(args.out) as tmp:  # a bad --out fails here, before MongoDB is asked
        total = _total(args, req, collection)
        sink = open_sink(args.format, tmp, arrow_schema(req.kind))
        return _run(args, req, collection, sink, total, batch)


def _shows_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _total(args: argparse.Namespace, req: Any, collection: Any) -> int | None:
    """The bar's total, counted only when there is a bar (a count is a second pass over the
    range on the server)."""
    from tasks.export.stream import count

    return count(collection, req) if _shows_progress(args) else None


def _run(
    args: argparse.Namespace, req: Any, collection: Any, sink: Any, total: int | None, batch: int
) -> Any:
    from tqdm import tqdm

    from tasks.export.stream import export_documents

    bar = tqdm(
        total=total,
        unit=" rows",
        unit_scale=True,
        desc=f"{req.kind} {req.inst_id}",
        file=sys.stderr,
        disable=not _shows_progress(args),
        leave=True,
    )
    try:
        result = export_documents(collection, req, sink, batch_docs=batch, progress=bar.update)
    except BaseException:
        bar.close()
        try:
            sink.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass
        raise
    bar.close()
    sink.close()
    return result


def _silence_stdout() -> None:
    # Python flushes stdout at exit; a closed pipe would raise again there
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
