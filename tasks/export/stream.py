"""The streaming loop of an export: a MongoDB cursor in time order, in bounded batches, into a
sink, chunk by chunk. What is in memory at any time is one cursor batch of documents, one chunk
of them as Arrow arrays and the sink's row group: nothing grows with the range.

Documents whose values do not fit their columns (tasks/export/columns.py) are left out, counted
and logged (the first few with their `_id` and reason); the result says how many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tasks.export.columns import to_batch
from tasks.export.query import SORT, ExportRequest, mongo_filter, tie_key
from tasks.export.sinks import Sink

log = logging.getLogger(__name__)

BATCH_DOCS = 2000  # documents per cursor batch and per Arrow chunk
LOGGED_REJECTIONS = 5  # rejected documents logged one by one; the rest only counted


@dataclass
class ExportResult:
    rows: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few, "_id: reason"


def in_time_order(kind: str, docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`docs` (sorted by dt) with each millisecond's documents in the kind's tie order; holds one
    millisecond's documents at a time."""
    group: list[dict[str, Any]] = []
    current: Any = None
    for doc in docs:
        t = doc.get("dt")
        if group and t != current:
            group.sort(key=lambda d: tie_key(kind, d))
            yield from group
            group = []
        current = t
        group.append(doc)
    group.sort(key=lambda d: tie_key(kind, d))
    yield from group


def chunks(docs: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count(collection: Any, req: ExportRequest) -> int:
    """How many documents the export will read (for the progress bar), on the same filter."""
    return int(collection.count_documents(mongo_filter(req)))


def export_documents(
    collection: Any,
    req: ExportRequest,
    sink: Sink,
    *,
    batch_docs: int = BATCH_DOCS,
    progress: Callable[[int], Any] | None = None,
) -> ExportResult:
    """Stream the request's documents from `collection` into `sink` (which the caller closes)."""
    cursor = collection.find(mongo_filter(req), sort=SORT, batch_size=batch_docs)
    result = ExportResult()
    try:
        for chunk in chunks(in_time_order(req.kind, cursor), batch_docs):
            batch, rejected = to_batch(req.kind, chunk)
            sink.write(batch)
            result.rows += batch.num_rows
            for doc, reason in rejected:
                _reject(result, req, doc, reason)
            if progress is not None:
                progress(len(chunk))
    finally:
        cursor.close()
    return result


def _reject(result: ExportResult, req: ExportRequest, doc: dict[str, Any], reason: str) -> None:
    result.rejected += 1
    if result.rejected <= LOGGED_REJECTIONS:
        line = f"{str(doc.get('_id'))[:80]}: {reason}"
        result.reasons.append(line)
        log.warning("export %s %s: document left out: %s", req.kind, req.inst_id, line)
