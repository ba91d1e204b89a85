"""Property test of the export: for random trades (decimals of any width okx/schemas.py accepts,
clustered and shared milliseconds, ids of any length, text fields with quotes, commas, newlines
and non-ASCII, fields OKX may add later), a random half-open range and a random batch size, both
files hold exactly the stored documents of [start, end), in (dt, tradeId as a number) order,
every decimal the exact string with the float Python rounds it to beside it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import mongomock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import keys
from okx.schemas import validate_row
from tasks.export import cli
from tests.test_export import INST, T0, assert_rows_are_docs, expected, read_rows, trade

digits = st.text(alphabet="0123456789", min_size=1, max_size=40)
decimals = st.one_of(
    digits,
    st.builds(lambda head, tail: f"{head}.{tail}", digits, digits),
)
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def trade_docs(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    ids = draw(st.lists(st.integers(1, 10**18), min_size=n, max_size=n, unique=True))
    docs = []
    for trade_id in ids:
        ts = T0 + draw(
            st.integers(min_value=0, max_value=200)
        )  # many share a millisecond, some an end
        extra = draw(st.dictionaries(st.sampled_from(["fooNew", "bar2"]), text, max_size=2))
        doc = trade(
            trade_id % 7,
            ts,
            px=draw(decimals),
            sz=draw(decimals),
            tradeId=str(trade_id),
            channel=draw(text),
            **extra,
        )
        assert validate_row("trades", {k: doc[k] for k in ("instId", "tradeId", "px", "sz",
                                                           "side", "ts")}) is None  # fmt: skip
        docs.append(doc)
    return docs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=trade_docs(),
    start=st.integers(min_value=0, max_value=200),
    length=st.integers(min_value=1, max_value=250),
    batch=st.integers(min_value=1, max_value=50),
)
def test_files_hold_exactly_the_documents_of_the_range(docs, start, length, batch):
    client = mongomock.MongoClient()
    if docs:
        client.okex[keys.TRADES].insert_many([dict(d) for d in docs])
    lo, hi = T0 + start, T0 + start + length
    want = expected(docs, lo, hi, "trades")
    with (
        mock.patch("tasks.export.cli.open_client", lambda *a, **k: client),
        tempfile.TemporaryDirectory() as where,
    ):
        for fmt in ("parquet", "csv"):
            out = Path(where) / f"t.{fmt}"
            argv = ["trades", INST, "--start", str(lo), "--end", str(hi), "--format", fmt]
            assert cli.main([*argv, "--out", str(out), "--batch-size", str(batch), "--quiet"]) == 0
            assert_rows_are_docs(read_rows(out, "trades", fmt), want)
