"""Command line: argument parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

import orjson

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


def _load_settings(args: argparse.Namespace) -> FeederSettings | None:
    """The feeder's settings, applied to this process (the book loop); None after printing the
    one-line reason when the configuration cannot work."""
    from core.settings import ConfigError, load

    try:
        settings = load(
            config_path=getattr(args, "config", None), record_path=getattr(args, "record", None)
        )
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return None
    if settings.book_pure:
        from okx.book import use_pure_python

        use_pure_python()
    return settings


def _setup_logging(args: argparse.Namespace) -> bool:
    from core.logs import setup
    from core.settings import ConfigError, load_logging

    try:
        configured = load_logging()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return False
    setup(args.log_level or configured.level, configured.fmt, secrets=configured.secrets)
    return True


def _run(args: argparse.Namespace) -> int:
    if not _setup_logging(args):
        return 2
    settings = _load_settings(args)
    if settings is None:
        return 2
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
    import redis

    from collector.status import format_status, gather
    from core.logs import Redactor
    from core.settings import load_logging

    settings = _load_settings(args)
    if settings is None:
        return 2
    try:
        st = gather(settings.redis_url)
    except redis.RedisError as exc:
        redact = Redactor(load_logging().secrets)  # REDIS_URL may carry a password
        print(redact(f"status: cannot read Redis at {settings.redis_url}: {exc}"), file=sys.stderr)
        return 1
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
        prog="python -m collector", description="OKX v5 data collector (feeder)"
    )
    _add_run_options(parser)
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the feeder (the default)")
    _add_run_options(run)
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="connections, last-message ages, open gaps, backlog")
    status.add_argument("--config", help="TOML settings file (also OKX_CONFIG)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
    replay = sub.add_parser("replay", help="replay a recording through the parser and the books")
    replay.add_argument("file", help='one frame per line, raw or {"ts":..,"frame":".."}')
    replay.add_argument("--json", action="store_true", help="print one JSON object (last line)")
    replay.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
