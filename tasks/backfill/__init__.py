"""Backfill: repair every gap of the ledger from OKX REST, on schedule and on demand, and audit
stored trades against REST. See docs/backfill.md.

    plan.py       pure: gap -> REST steps, times, sweep and audit decisions
    ledger.py     gap transitions in Redis (atomic Lua: claim with lease, progress, finish)
    source.py     the REST client and paging fetchers (okx/rest/client.py, okx/rest/endpoints.py)
    repair.py     one gap: claim, page, store, save cursor, finish
    snapshots.py  balances/positions/book/ticker from REST
    sweep.py      the beat sweep; audit.py the trade audit and the fills sync
    tasks.py      the Celery tasks; cli.py `python -m tasks.backfill`
"""
