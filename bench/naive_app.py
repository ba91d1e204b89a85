"""The naive design the issue compares against, on the same stack: one Celery task per WebSocket
frame, no batching, stdlib json everywhere, writes one by one.

    celery -A bench.naive_app worker -Q naive ...      # the naive worker
    python -m bench.naive_app publish                  # the naive feeder

Same sockets (websocket-client, UTF-8 check skipped as the real feeder does, so the comparison
is about batching, not about the receive path), same broker, same Redis state keys and MongoDB
collections as the real workers, same environment (REDIS_URL, MONGODB_URI, MONGODB_DB,
OKX_WS_URL, OKX_INSTRUMENTS, OKX_CHANNELS). What it does not do: order books (it stores the top
five levels of each books frame as sent), versioning, retries, gaps. It is a baseline, never a
way to run the collector. It imports nothing from tasks/ (whose app installs orjson for JSON);
its Redis key names come from core/keys.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from celery import Celery

from core import keys

NAIVE_QUEUE = "naive"
NAIVE_TASK = "bench.naive.frame"
FRAMES_KEY = "naive:frames"  # frames the naive feeder has read (for the benchmark)

app = Celery(
    "naive", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), set_as_current=False
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=NAIVE_QUEUE,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=4,
)

_clients: dict[str, Any] = {}


def _redis() -> Any:
    if "redis" not in _clients or _clients["pid"] != os.getpid():
        import redis

        _clients.clear()
        _clients["pid"] = os.getpid()
        _clients["redis"] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _clients["redis"]


def _mongo() -> Any:
    _redis()  # resets the cache after a fork
    if "mongo" not in _clients:
        uri = os.environ["MONGODB_URI"]
        if uri.startswith("benchsink://"):  # bench/e2e.py --mongo sink: encode, keep nothing
            client: Any = {"okex": _BsonSinkDb()}
            _clients["mongo"] = client["okex"]
            return _clients["mongo"]
        if uri.startswith("mongostandin://"):
            from localrun.mongo_standin import StandinClient

            client = StandinClient(uri)
        else:
            from pymongo import MongoClient

            client = MongoClient(uri)
        _clients["mongo"] = client[os.environ.get("MONGODB_DB", "okex")]
    return _clients["mongo"]


class _BsonSinkDb:
    """MongoDB replaced by its client-side cost: BSON-encode each document, keep nothing."""

    def __getitem__(self, name: str) -> _BsonSinkDb:
        return self

    def insert_one(self, doc: dict) -> None:
        import bson

        bson.encode(doc)


def _insert(collection: str, doc: dict) -> None:
    import pymongo.errors

    try:
        _mongo()[collection].insert_one(doc)
    except pymongo.errors.DuplicateKeyError:
        pass


@app.task(name=NAIVE_TASK, ignore_result=True)
def frame(msg: dict) -> int:
    """Store one WebSocket frame: every record one write at a time."""
    arg, data = msg.get("arg", {}), msg.get("data", [])
    channel, inst = arg.get("channel", ""), arg.get("instId", "")
    r = _redis()
    for rec in data:
        if channel in ("trades", "trades-all"):
            _insert("trades", {"_id": f"{inst}:{rec['tradeId']}", **rec})
            r.zadd(keys.trades(inst), {json.dumps(rec, sort_keys=True): float(rec["ts"])})
            r.zremrangebyrank(keys.trades(inst), 0, -101)
        elif channel == "tickers":
            _insert("tickers", {"_id": f"{inst}:{rec['ts']}", **rec})
            r.hset(keys.ticker(inst), mapping={k: str(v) for k, v in rec.items()})
        elif channel.startswith("books") or channel == "bbo-tbt":
            asks, bids = rec.get("asks", [])[:5], rec.get("bids", [])[:5]
            r.hset(
                keys.books5(inst),
                mapping={
                    "asks": json.dumps(asks),
                    "bids": json.dumps(bids),
                    "ts": rec.get("ts", ""),
                    "seqId": str(rec.get("seqId", "")),
                    "channel": channel,
                },
            )
        elif channel.startswith("candle"):
            bar = channel[len("candle") :]
            fields = dict(
                zip(("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm"), rec)
            )
            r.hset(keys.candle(inst, bar), mapping=fields)
            if fields.get("confirm") == "1":
                _insert("candles", {"_id": f"{inst}:{bar}:{fields['ts']}", **fields})
    return len(data)


# ----- the naive feeder ------------------------------------------------------------------------------


def _endpoint(channel: str) -> str:
    return "business" if channel.startswith("candle") or channel == "trades-all" else "public"


def publish(stop: threading.Event) -> None:
    """One thread per endpoint: read a frame, json.loads it, send one task. Counts frames in Redis."""
    import websocket

    base = os.environ["OKX_WS_URL"]
    insts = os.environ["OKX_INSTRUMENTS"].split(",")
    chans = os.environ["OKX_CHANNELS"].split(",")
    by_endpoint: dict[str, list[dict]] = {}
    for c in chans:
        by_endpoint.setdefault(_endpoint(c), []).extend({"channel": c, "instId": i} for i in insts)
    counts = {"frames": 0}
    lock = threading.Lock()

    def reader(endpoint: str, args: list[dict]) -> None:
        ws = websocket.create_connection(
            f"{base}/ws/v5/{endpoint}", timeout=5, skip_utf8_validation=True
        )
        ws.send(json.dumps({"op": "subscribe", "args": args}))
        ws.settimeout(0.5)
        while not stop.is_set():
            try:
                _op, raw = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            msg = json.loads(raw)
            if isinstance(msg, dict) and "data" in msg:
                app.send_task(NAIVE_TASK, args=[msg], queue=NAIVE_QUEUE)
            with lock:
                counts["frames"] += 1
        ws.close()

    threads = [
        threading.Thread(target=reader, args=item, daemon=True) for item in by_endpoint.items()
    ]
    for t in threads:
        t.start()
    r = _redis()
    while not stop.wait(0.5):
        r.set(FRAMES_KEY, counts["frames"])
        if not any(t.is_alive() for t in threads):
            break
    for t in threads:
        t.join(2)
    r.set(FRAMES_KEY, counts["frames"])


def main(argv: list[str]) -> int:
    if argv[:1] != ["publish"]:
        print(__doc__, file=sys.stderr)
        return 2
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    publish(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
