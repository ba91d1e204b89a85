"""A checked record's identity for the duplicate check (pure; tasks/writers/seen.py does the I/O).

Two redundant feeders send the same records in differently cut batches. A worker drops a record
whose identity a worker already STORED (docs/redundancy-workers.md), so the identity must name
exactly what the writers would do with the record: two records with one identity must write
the same history document and the same state version, so that storing the second changes
nothing that the order of two tasks (which Celery never fixes) could not change anyway.

It is therefore the history document's natural key (tasks/documents.natural_id, without books
sampling) joined with the state version (documents.*_key):

    kind       scope (in the key)   member               time (bucket)
    trades     instId               tradeId              ts       (ZADD member: the trade itself)
    tickers    instId               ts                   ts
    books      channel|instId       s|f + seqId:ts       ts       (f: a full snapshot)
    candles    bar|instId           ts:confirm:vol       ts       (a forming bar grows in vol)
    orders     instId               ordId:uTime:state    uTime    (the order<N> event key)
    balances   ccy                  uTime                uTime
    positions  posId                uTime                uTime

`bucket` is the record's exchange time in whole seconds: both copies of a record fall in the
same `seen:` set whatever moment each worker handles them, and each set stays small.
"""

from __future__ import annotations

from typing import Any

BUCKET_MS = 1000

Identity = tuple[str, str, int, str]  # (kind, scope, bucket, member)


def identity(kind: str, rec: dict[str, Any]) -> Identity | None:
    """The record's identity, or None when it has none (unknown kind): never dropped then.
    `rec` has passed documents.check_record (its fields exist, its times are digit strings)."""
    if kind == "trades":
        return kind, rec["instId"], int(rec["ts"]) // BUCKET_MS, str(rec["tradeId"])
    if kind == "tickers":
        return kind, rec["instId"], int(rec["ts"]) // BUCKET_MS, rec["ts"]
    if kind == "books":
        seq = rec.get("seqId")
        member = f"{'f' if rec.get('full') else 's'}{'' if seq is None else seq}:{rec['ts']}"
        return kind, f"{rec['channel']}|{rec['instId']}", int(rec["ts"]) // BUCKET_MS, member
    if kind == "candles":
        member = f"{rec['ts']}:{rec['confirm']}:{rec.get('vol', '')}"
        return kind, f"{rec['bar']}|{rec['instId']}", int(rec["ts"]) // BUCKET_MS, member
    if kind == "orders":
        member = f"{rec['ordId']}:{rec['uTime']}:{rec['state']}"
        return kind, rec["instId"], int(rec["uTime"]) // BUCKET_MS, member
    if kind == "balances":
        return kind, rec["ccy"], int(rec["uTime"]) // BUCKET_MS, rec["uTime"]
    if kind == "positions":
        return kind, rec["posId"], int(rec["uTime"]) // BUCKET_MS, rec["uTime"]
    return None
