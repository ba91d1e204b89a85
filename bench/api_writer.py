"""A state writer for bench/api.py --write-hz: every latest-state key changed HZ times a second.

    python -m bench.api_writer REDIS_URL HZ

Until killed: each round sets a new `ts` on the ticker, books5, 1m candle and VWAP hashes of
BTC-USDT and adds one trade to its latest-trades set (trimmed to 100), in one pipeline, then
waits for the next round (paced, no catch-up). Every write invalidates the web's cached bodies
of that key, so the cache's hit rate and the misses' latency show up in the measurement.
"""

from __future__ import annotations

import sys
import time

import orjson
import redis

from core import keys

INST = "BTC-USDT"


def main() -> int:
    r = redis.Redis.from_url(sys.argv[1])
    period = 1.0 / float(sys.argv[2])
    hashes = (keys.ticker(INST), keys.books5(INST), keys.candle(INST, "1m"), keys.vwap_key(INST))
    n = 0
    nxt = time.monotonic()
    while True:
        n += 1
        ts = str(1_700_000_000_000 + 1_000_000 + n)
        pipe = r.pipeline(transaction=False)
        for key in hashes:
            pipe.hset(key, "ts", ts)
        trade = {"instId": INST, "tradeId": str(10_000_000 + n), "px": "35000.5", "ts": ts}
        pipe.zadd(keys.trades(INST), {orjson.dumps(trade): int(ts)})
        pipe.zremrangebyrank(keys.trades(INST), 0, -101)
        pipe.execute()
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()


if __name__ == "__main__":
    raise SystemExit(main())
