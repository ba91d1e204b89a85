"""Run nx-27017 (a MongoDB wire-protocol server on SQLite) with our fixes: `python -m
localrun.mongo_wire_main --data-dir DIR -p PORT --log-file F --pid-file P`.

nx-27017 keeps each collection in an SQLite table of the same name, and neosqlite (its storage
layer) splices that name into SQL unquoted in dozens of places: a collection named after an SQL
keyword (our `order`, from the original design) fails with `near "order": syntax error`. We must
not rename the collection, so the names are translated where neosqlite's Connection hands out
collections: a keyword name `order` lives in the table `order__kw`, and is listed as `order`
again. Clients never see the table name. The translation is idempotent (a table name is not a
keyword), so a neosqlite internal that passes a table name back in is harmless. See
docs/mongodb-wire.md for this and nx-27017's other gaps.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

# SQLite's keywords (https://sqlite.org/lang_keywords.html), lower case.
SQLITE_KEYWORDS = frozenset(
    """abort action add after all alter always analyze and as asc attach autoincrement before
    begin between by cascade case cast check collate column commit conflict constraint create
    cross current current_date current_time current_timestamp database default deferrable
    deferred delete desc detach distinct do drop each else end escape except exclude exclusive
    exists explain fail filter first following for foreign from full generated glob group groups
    having if ignore immediate in index indexed initially inner insert instead intersect into is
    isnull join key last left like limit match materialized natural no not nothing notnull null
    nulls of offset on or order others outer over partition plan pragma preceding primary query
    raise range recursive references regexp reindex release rename replace restrict returning
    right rollback row rows savepoint select set table temp temporary then ties to transaction
    trigger unbounded union unique update using vacuum values view virtual when where window
    with without""".split()
)

TABLE_SUFFIX = "__kw"


def table_name(collection: str) -> str:
    """The SQLite table that holds `collection`: the name itself unless it is an SQL keyword."""
    if isinstance(collection, str) and collection.lower() in SQLITE_KEYWORDS:
        return collection + TABLE_SUFFIX
    return collection


def collection_name(table: str) -> str:
    """The inverse of table_name."""
    if isinstance(table, str) and table.endswith(TABLE_SUFFIX):
        base = table[: -len(TABLE_SUFFIX)]
        if base.lower() in SQLITE_KEYWORDS:
            return base
    return table


def _name_in(method: Callable[..., Any], *positions: int) -> Callable[..., Any]:
    """Wrap a Connection method so its collection-name arguments (by position after self) are
    translated to table names."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        args_list = list(args)
        for i in positions:
            if i < len(args_list):
                args_list[i] = table_name(args_list[i])
        for key in ("name", "old_name", "new_name"):
            if key in kwargs:
                kwargs[key] = table_name(kwargs[key])
        return method(self, *args_list, **kwargs)

    wrapper.__okx_patched__ = True  # type: ignore[attr-defined]
    return wrapper


def patch_neosqlite() -> None:
    """Translate collection names to table names at every entry of neosqlite's Connection."""
    from neosqlite.collection import Collection
    from neosqlite.connection import Connection

    if getattr(Connection.__getitem__, "__okx_patched__", False):
        return
    for name, positions in (
        ("__getitem__", (0,)),
        ("get_collection", (0,)),
        ("create_collection", (0,)),
        ("drop_collection", (0,)),
        ("rename_collection", (0, 1)),
    ):
        setattr(Connection, name, _name_in(getattr(Connection, name), *positions))
    Collection.rename = _name_in(Collection.rename, 0)

    list_names = Connection.list_collection_names
    list_infos = Connection.list_collections

    def list_collection_names(self: Any) -> list[str]:
        return [collection_name(n) for n in list_names(self)]

    def list_collections(self: Any) -> list[dict[str, Any]]:
        return [{**info, "name": collection_name(info["name"])} for info in list_infos(self)]

    Connection.list_collection_names = list_collection_names
    Connection.list_collections = list_collections


def patch_datetime_updates() -> None:
    """`$set: {field: datetime}` is bound as a plain SQLite parameter, which sqlite3 turns into the
    text '2026-01-01 00:00:00.000' (a string, not a date, when read back). neosqlite already
    stores dicts as JSON with its BSON-datetime encoding, so hand it the datetime that way."""
    from datetime import datetime

    from neosqlite.collection.query_helper import _sql_updates

    convert = _sql_updates._convert_bytes_to_binary
    if getattr(convert, "__okx_patched__", False):
        return

    def convert_with_dates(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return {"$date": obj.isoformat()}
        return convert(obj)

    convert_with_dates.__okx_patched__ = True  # type: ignore[attr-defined]
    _sql_updates._convert_bytes_to_binary = convert_with_dates


def _millisecond_datetime() -> Callable[[Any], Any]:
    """SQLite's datetime(x) with milliseconds kept: strftime('%Y-%m-%d %H:%M:%f', x), computed
    by SQLite itself (so every time format it parses, time zones included, means the same), on
    a private in-memory connection per thread."""
    import sqlite3
    import threading

    local = threading.local()

    def millisecond_datetime(value: Any) -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(":memory:")
        return conn.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', ?)", (value,)).fetchone()[0]

    return millisecond_datetime


def patch_datetime_comparisons() -> None:
    """neosqlite compares dates as `datetime(field) >= datetime(?)`, and SQLite's datetime()
    drops the fractional seconds: `{"dt": {"$gt": T}}` then misses T + 500 ms, and `$lte T` finds
    T + 999 ms. BSON dates have millisecond precision, so datetime(x) is overridden (SQLite lets
    an application function replace a built-in one) by one that keeps the milliseconds."""
    from neosqlite.connection import Connection

    register = Connection._register_custom_functions
    if getattr(register, "__okx_patched__", False):
        return
    millisecond_datetime = _millisecond_datetime()

    def register_with_ms_datetime(self: Any) -> None:
        register(self)
        self.db.create_function("datetime", 1, millisecond_datetime, deterministic=True)

    register_with_ms_datetime.__okx_patched__ = True  # type: ignore[attr-defined]
    Connection._register_custom_functions = register_with_ms_datetime


def main(argv: list[str] | None = None) -> None:
    patch_neosqlite()
    patch_datetime_updates()
    patch_datetime_comparisons()
    from nx_27017.nx_27017 import main as nx_main

    sys.argv = ["nx-27017", *(sys.argv[1:] if argv is None else argv)]
    nx_main()


if __name__ == "__main__":
    main()
