"""Where an export's batches go: a Parquet or CSV file written beside its final name and renamed
into place only when complete, or CSV on stdout (`--out -`).

`atomic_output(path)` yields the temporary path (`.<name>.<random>.part` in the same directory,
so the rename is atomic on one filesystem) and renames it over `path` when the block ends
normally; on any exception, KeyboardInterrupt included, the temporary file is removed and
nothing appears at `path` (an older file there stays as it was). A temporary file that cannot
be created (no such directory, no permission) is a PlanError: the operator's --out is wrong.

The sinks write each batch as it comes: Parquet collects batches until they hold at least
`row_group_rows` rows and writes them as one row group (a row group is what a reader loads at once), CSV writes every
batch at once. Memory is one row group, whatever the range.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import PlanError

ROW_GROUP_ROWS = 16_384  # ~2.5 MB of trades in Arrow: small enough for flat memory, big for pandas


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        # a missing directory or no permission: the operator's --out, said in one line
        raise PlanError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the file is an ordinary output
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class ParquetSink:
    def __init__(self, where: str, schema: pa.Schema, row_group_rows: int | None = None) -> None:
        # zstd: trades compress ~5x and decode faster than gzip; pandas/pyarrow read it as is
        self._writer = pq.ParquetWriter(where, schema, compression="zstd")
        self._schema = schema
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self._group = row_group_rows or ROW_GROUP_ROWS

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self._group:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=self._schema)
            # one row group per flush (row_group_rows up to one batch more), never a full group
            # plus a small remainder
            self._writer.write_table(table, row_group_size=table.num_rows)
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


class CsvSink:
    """RFC 4180 CSV with a header: strings quoted, nulls empty and unquoted (so "" and a missing
    field differ), booleans true/false, times ISO-8601 with a Z."""

    def __init__(self, where: str | IO[bytes], schema: pa.Schema) -> None:
        self._writer = pacsv.CSVWriter(where, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


Sink = ParquetSink | CsvSink


def open_sink(fmt: str, where: str | IO[bytes], schema: pa.Schema, **kw: Any) -> Sink:
    if fmt == "parquet":
        assert isinstance(where, str), "Parquet needs a file: it is written with a footer"
        return ParquetSink(where, schema, **kw)
    return CsvSink(where, schema)
