"""Parser benchmark: frames/s of okx.parse.parse_frame (with the shared schemas) against the
parser before validation (a frozen copy in bench/frozen/), on real-shaped frames of each channel
(tests/recordings/okx_docs_frames.py, plus a 20-level book update and a 400-level snapshot),
interleaved in the same run so machine noise hits both alike.

    .venv/bin/python bench/parse.py [--seconds 0.5] [--repeats 5]

Prints one line per channel (old/s, new/s, new/old) and a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.frozen.parse_before_schemas import parse_frame as old_parse  # noqa: E402
from okx.parse import parse_frame as new_parse  # noqa: E402
from tests.recordings.okx_docs_frames import WS_FRAMES  # noqa: E402


def _levels(rng: random.Random, n: int, base: float, step: float) -> list[list[str]]:
    return [
        [f"{base + i * step:.1f}", f"{rng.uniform(0.001, 5):.8f}", "0", str(rng.randint(1, 30))]
        for i in range(n)
    ]


def frames() -> dict[str, bytes]:
    rng = random.Random(1)
    out = {ch: json.dumps(f, separators=(",", ":")).encode() for ch, f in WS_FRAMES.items()}
    update = copy.deepcopy(WS_FRAMES["books"])
    update["action"] = "update"
    item = update["data"][0]
    item.update(asks=_levels(rng, 10, 41000, 0.1), bids=_levels(rng, 10, 40999, -0.1))
    item.update(prevSeqId=123456, seqId=123457)
    out["books update 20 levels"] = json.dumps(update, separators=(",", ":")).encode()
    snap = copy.deepcopy(WS_FRAMES["books"])
    snap["data"][0].update(asks=_levels(rng, 400, 41000, 0.1), bids=_levels(rng, 400, 40999, -0.1))
    out["books snapshot 400 levels"] = json.dumps(snap, separators=(",", ":")).encode()
    return out


def rate(fn, raw: bytes, seconds: float) -> float:
    n, batch = 0, 200
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            fn(raw)
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="alternating old/new; median kept")
    args = ap.parse_args()
    summary = {}
    for name, raw in frames().items():
        assert type(new_parse(raw)).__name__ == "Data", name
        olds, news = [], []
        for _ in range(args.repeats):
            olds.append(rate(old_parse, raw, args.seconds))
            news.append(rate(new_parse, raw, args.seconds))
        old, new = sorted(olds)[len(olds) // 2], sorted(news)[len(news) // 2]
        summary[name] = {"old_per_s": round(old), "new_per_s": round(new), "ratio": new / old}
        print(f"{name:28s} old {old:>10,.0f}/s  new {new:>10,.0f}/s  new/old {new / old:.2f}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
