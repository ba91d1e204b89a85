"""Fuzz bench: mutated frames (tests/frame_mutators.py, the property test's mutators, seeded)
through okx.parse.parse_frame and the feeder's Pipeline (a list sink).

    .venv/bin/python bench/fuzz.py [--frames 1000000] [--seed 1]

Reports exceptions (target 0), wrongly accepted frames (the mutation made the frame invalid per
the independent checker, yet the parser returned Data: target 0), wrongly rejected frames (valid
per the checker, rejected: reported, not a target: a mutation may produce a valid frame, e.g.
"1" -> "12"), and frames/s. Exits 1 if a target is missed. One valid frame in four is mixed in
so books exist and trades dedupe. The mutated frames are made before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from collector.pipeline import Pipeline  # noqa: E402
from okx.parse import parse_frame  # noqa: E402
from okx.records import Data  # noqa: E402
from tests.frame_mutators import encode, item_ok, mutate  # noqa: E402
from tests.recordings.okx_docs_frames import WS_FRAMES  # noqa: E402

CHUNK = 20_000  # frames made, then timed, per round (bounded memory for a million)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    channels = sorted(WS_FRAMES)
    valid = {ch: encode(f) for ch, f in WS_FRAMES.items()}
    sink: list[tuple] = []
    pipeline = Pipeline(lambda *rec: sink.append(rec), full_every_ms=0)
    exceptions: Counter[str] = Counter()
    wrongly_accepted: Counter[str] = Counter()
    wrongly_rejected: Counter[str] = Counter()
    first_examples: dict[str, str] = {}
    parse_s = pipe_s = 0.0
    done = 0
    while done < args.frames:
        batch = []
        for _ in range(min(CHUNK, args.frames - done)):
            channel = rng.choice(channels)
            if rng.random() < 0.25:
                batch.append((channel, valid[channel], True, "valid"))
                continue
            _, frame, label = mutate(rng, channel)
            ok = item_ok(channel, frame["data"][0], frame)
            batch.append((channel, encode(frame), ok, f"{channel} {label}"))
        t0 = time.perf_counter()
        results = []
        for _channel, raw, _ok, label in batch:
            try:
                results.append(parse_frame(raw))
            except Exception:  # noqa: BLE001 - counting them is the point
                exceptions[label] += 1
                first_examples.setdefault(label, traceback.format_exc(limit=3))
                results.append(None)
        t1 = time.perf_counter()
        for i, (_channel, raw, _ok, label) in enumerate(batch):
            try:
                pipeline.feed(1, raw, done + i)
            except Exception:  # noqa: BLE001
                exceptions["pipeline " + label] += 1
                first_examples.setdefault("pipeline " + label, traceback.format_exc(limit=3))
        t2 = time.perf_counter()
        parse_s += t1 - t0
        pipe_s += t2 - t1
        for (_channel, raw, ok, label), result in zip(batch, results):
            accepted = type(result) is Data
            if accepted and not ok:
                wrongly_accepted[label] += 1
                first_examples.setdefault(label, raw.decode(errors="replace")[:300])
            elif ok and not accepted and result is not None:
                wrongly_rejected[label] += 1
        sink.clear()
        done += len(batch)
    summary = {
        "frames": done,
        "exceptions": sum(exceptions.values()),
        "wrongly_accepted": sum(wrongly_accepted.values()),
        "wrongly_rejected": sum(wrongly_rejected.values()),
        "parse_frames_per_s": round(done / parse_s) if parse_s else None,
        "pipeline_frames_per_s": round(done / pipe_s) if pipe_s else None,
        "parse_errors_counted": sum(pipeline.parse_errors.values()),
        "error_categories": len(pipeline.parse_errors),
    }
    for name, counter in (
        ("exceptions", exceptions),
        ("wrongly accepted", wrongly_accepted),
        ("wrongly rejected", wrongly_rejected),
    ):
        for label, n in counter.most_common(10):
            print(f"{name}: {n} x {label}", file=sys.stderr)
            if label in first_examples and name != "wrongly rejected":
                print("   ", first_examples[label][:300], file=sys.stderr)
    print(json.dumps(summary))
    return 1 if summary["exceptions"] or summary["wrongly_accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
