"""Command line: argument parsing only; each command lives in its own module.

Errors follow core/cli_errors.py, the policy of every command: a bad setting or an unreachable
Redis is one line on stderr and exit 2 or 1, a bug a (redacted) traceback."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

import orjson

from core.cli_errors import EXIT_CODES_EPILOG, feeder_targets, run_cli

PROG = "python -m collector"

if TYPE_CHECKING:
    from core.settings import FeederSettings


def _replay(args: argparse.Namespace) -> int:
    from collector.replay import format_summary, replay_file

    try:
        summary = replay_file(args.file)
    except OSError as exc:
        print(f"replay: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(format_summary(args.file, summary))
    return 0


def _load_settings(args: argparse.Namespace) -> FeederSettings:
    """The feeder's settings, applied to this process (the book loop)."""
    from core.settings import load

    # a ConfigError goes to core/cli_errors.py's one line (exit 2)
    settings = load(
        config_path=getattr(args, "config", None), record_path=getattr(args, "record", None)
    )
    if settings.book_pure:
        from okx.book import use_pure_python

        use_pure_python()
    return settings


def _setup_logging(args: argparse.Namespace) -> None:
    from core.logs import setup
    from core.settings import load_logging

    configured = load_logging()
    setup(args.log_level or configured.level, configured.fmt, secrets=configured.secrets)


def _run(args: argparse.Namespace) -> int:
    _setup_logging(args)
    settings = _load_settings(args)
    from collector.feeder import Feeder

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    feeder = Feeder(settings)
    try:
        feeder.start()
    except OSError as exc:
        print(f"feeder: cannot start: {exc}", file=sys.stderr)
        feeder.stop(2.0)
        return 1
    while not stop.wait(0.5):
        pass
    feeder.stop(9.0)
    return 0


def _status(args: argparse.Namespace) -> int:
    from collector.status import format_status, gather

    settings = _load_settings(args)
    st = gather(settings.redis_url)  # Redis down: one line naming REDIS_URL, redacted (exit 1)
    print(orjson.dumps(st).decode() if args.json else format_status(st))
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file (also OKX_CONFIG)")
    p.add_argument("--record", metavar="FILE", help="write every received frame to FILE")
    p.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING... (also LOG_LEVEL); LOG_FORMAT=logfmt|json",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="OKX v5 data collector (feeder)", epilog=EXIT_CODES_EPILOG
    )
    _add_run_options(parser)
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the feeder (the default)", epilog=EXIT_CODES_EPILOG)
    _add_run_options(run)
    run.set_defaults(func=_run)
    status = sub.add_parser(
        "status",
        help="connections, last-message ages, open gaps, backlog",
        epilog=EXIT_CODES_EPILOG,
    )
    status.add_argument("--config", help="TOML settings file (also OKX_CONFIG)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
    replay = sub.add_parser(
        "replay",
        help="replay a recording through the parser and the books",
        epilog=EXIT_CODES_EPILOG,
    )
    replay.add_argument("file", help='one frame per line, raw or {"ts":..,"frame":".."}')
    replay.add_argument("--json", action="store_true", help="print one JSON object (last line)")
    replay.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse's message, exit 2
    return run_cli(
        PROG,
        lambda: int(args.func(args)),
        lambda: feeder_targets(getattr(args, "config", None)),
        # the feeder sets up its own logging (LOG_LEVEL, --log-level); status and replay only
        # show errors besides their output
        log_level=None if args.func is _run else "ERROR",
    )
