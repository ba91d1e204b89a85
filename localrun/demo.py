"""`./dev.sh demo`: run the collector offline.

Until the feeder lands, the demo replays a real OKX recording through the parser and the books
and prints what it found. It will grow into the whole system (okxsim, redis-server, feeder,
workers, beat, Flower) as those pieces land.
"""
from __future__ import annotations

import sys
from pathlib import Path

from collector.replay import format_summary, replay_file

RECORDING = Path(__file__).resolve().parent.parent / "tests" / "recordings" / "okx_public_2022_fragment.jsonl"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else str(RECORDING)
    try:
        summary = replay_file(path)
    except OSError as exc:
        print(f"demo: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(format_summary(path, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
