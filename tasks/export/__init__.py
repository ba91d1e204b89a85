"""Exports for pandas: `python -m tasks.export trades|candles|vwap|orders|fills INSTID --start
--end --format parquet|csv --out FILE` (docs/export.md).

    query.py    the request, checked, and the MongoDB filter, sort and tie order (pure)
    columns.py  the fixed columns of each kind; documents -> Arrow batches (pure)
    stream.py   cursor -> chunks -> sink, bounded memory; rejected documents counted
    sinks.py    Parquet (row groups) and CSV writers; the temp file renamed at the end
    cli.py      the command line, under core/cli_errors.py's policy; the progress bar

Importing the package opens nothing and reads no environment.
"""
