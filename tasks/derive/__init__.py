"""Derived data: candles from stored trades at every OKX bar, and the rolling VWAP.

Pure: bars.py (bar arithmetic, HK-time days), ohlcv.py (exact OHLCV, flags, documents),
vwap.py (exact rolling VWAP at second marks). Thin I/O: dirty.py (the dirty set in Redis, marked
by the trades writer and by backfill when it closes a gap), store.py (MongoDB), rebuild.py (one
rebuild), tasks.py (the beat task). Design and figures: docs/derived.md.
"""
