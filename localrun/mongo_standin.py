"""A MongoDB STAND-IN shared across processes: mongomock behind a loopback socket.

NOT MongoDB. No machine here can run `mongod`, yet the crash tests and the offline demo run
workers as separate processes that must write to one database the test (or the demo) can read.
This module serves one in-memory mongomock client to many processes:

    python -m localrun.mongo_standin --port 27999            # or MongoStandin().start() in-process
    MONGODB_URI=mongostandin://127.0.0.1:27999 \
    MONGO_CLIENT_FACTORY=localrun.mongo_standin:client_for celery -A tasks worker ...

tasks.clients builds its Mongo client with `client_for` (the MONGO_CLIENT_FACTORY hook), which
picks `StandinClient` for the `mongostandin://` scheme. It implements the subset of
pymongo the workers use (insert_one/many, replace/update/delete, find with sort/limit, find_one,
count_documents, create_index(es), ping). Server-side pymongo errors come back as the same pymongo
exceptions (BulkWriteError keeps its details, so duplicate keys count as duplicates); a refused or
broken connection raises pymongo.errors.AutoReconnect, like a real outage. Data lives only in
the server's memory; calls run one at a time under a lock (mongomock is not thread-safe).
Loopback only; requests are pickled over a connection authenticated with a shared key.
"""

from __future__ import annotations

import argparse
import datetime
import threading
import time
from multiprocessing.connection import Client, Listener
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pymongo.errors
from pymongo import IndexModel

AUTHKEY = b"okx-mongo-standin"  # local test/demo stand-in only
COLLECTION_METHODS = {
    "insert_one",
    "insert_many",
    "replace_one",
    "update_one",
    "update_many",
    "delete_one",
    "delete_many",
    "find",
    "find_one",
    "count_documents",
    "estimated_document_count",
    "create_index",
    "create_indexes",
    "drop",
    "index_information",
}
DATABASE_METHODS = {"command", "list_collection_names", "drop_collection", "drop_database"}


# ----- speed: two O(n)-per-write paths of mongomock, replaced for the stand-in's collections only ------
#
# mongomock checks a unique secondary index by scanning every document through its query engine
# for each inserted document, and expires TTL indexes by scanning every document on each lookup
# (including the `_id in store` test of every insert). Both made each write cost O(collection):
# a 200-trade batch took ~0.5 s at 2,000 stored trades and seconds at 10,000, so the demo's
# ingest backlog grew without bound. The classes below keep mongomock's behaviour and answers,
# with a hash map per unique index and TTL expiry at most once a second.

_HASHABLE_SCALARS = (str, int, float, datetime.datetime, type(None))


def _plain_unique_fields(index: dict) -> list[str] | None:
    """The fields of a unique index we can check with a hash map, else None (mongomock decides)."""
    if not index.get("unique") or index.get("partialFilterExpression") is not None:
        return None
    fields = [k for k, _ in index.get("key", ())]
    return fields if fields and not any("." in f for f in fields) else None


def _unique_key(doc: dict, fields: list[str]) -> tuple | None:
    key = tuple(doc.get(f) for f in fields)
    # bool hashes equal to 0/1 but MongoDB keeps them distinct: let mongomock decide those
    if all(isinstance(v, _HASHABLE_SCALARS) and not isinstance(v, bool) for v in key):
        return key
    return None


def _make_fast_collection_class():
    import mongomock.collection
    from mongomock import DuplicateKeyError

    class FastUniqueCollection(mongomock.collection.Collection):
        """`_ensure_uniques` with a key -> _id map per unique index, checked against the store,
        so a deleted or updated document never leaves a stale entry that could wrongly refuse."""

        def _ensure_uniques(self, new_data):  # noqa: ANN001 - mongomock's signature
            if isinstance(new_data.get("_id"), dict):  # stored under a hashdict: the slow path
                return super()._ensure_uniques(new_data)
            store = self._store
            maps = store.__dict__.setdefault("_standin_unique_maps", {})
            updates = []
            for name, index in store.indexes.items():
                if not index.get("unique"):
                    continue
                fields = _plain_unique_fields(index)
                key = None if fields is None else _unique_key(new_data, fields)
                if key is None:
                    return super()._ensure_uniques(new_data)  # the general, slow path
                if index.get("sparse") and all(v is None for v in key):
                    continue
                spec = (name, tuple(fields))
                seen = maps.get(spec)
                if seen is None:  # first use of this index: learn the documents already stored
                    seen = maps[spec] = {}
                    for doc in store._documents.values():
                        k = _unique_key(doc, fields)
                        if k is not None and doc is not new_data:
                            seen[k] = doc.get("_id")
                holder_id = seen.get(key)
                if holder_id is not None and holder_id != new_data.get("_id"):
                    holder = store._documents.get(holder_id)
                    if holder is not None and _unique_key(holder, fields) == key:
                        raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
                updates.append((seen, key))
            for seen, key in updates:
                seen[key] = new_data.get("_id")

    return FastUniqueCollection


def _make_fast_store_class():
    from mongomock.store import CollectionStore

    class ThrottledTTLStore(CollectionStore):
        """TTL expiry at most once a second (MongoDB's own TTL monitor runs once a minute)."""

        def _remove_expired_documents(self):
            now = time.monotonic()
            if now - self.__dict__.get("_standin_ttl_at", -1.0) >= 1.0:
                self.__dict__["_standin_ttl_at"] = now
                super()._remove_expired_documents()

    return ThrottledTTLStore


# ----- server --------------------------------------------------------------------------------------


def _result(method: str, res: Any) -> Any:
    if method == "insert_one":
        return {"inserted_id": res.inserted_id}
    if method == "insert_many":
        return {"inserted_ids": list(res.inserted_ids)}
    if method in ("replace_one", "update_one", "update_many"):
        return {
            "matched_count": res.matched_count,
            "modified_count": res.modified_count,
            "upserted_id": res.upserted_id,
        }
    if method in ("delete_one", "delete_many"):
        return {"deleted_count": res.deleted_count}
    if method == "index_information":  # mongomock gives dict_items for "key"
        return {name: {**info, "key": list(info["key"])} for name, info in res.items()}
    return res


class MongoStandin:
    """The server: `start()` serves in background threads; `client` is the mongomock client."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        import mongomock

        self.client = mongomock.MongoClient()
        self._fast_collection = _make_fast_collection_class()
        self._fast_store = _make_fast_store_class()
        self.lock = threading.RLock()
        self.listener = Listener((host, port), authkey=AUTHKEY)
        self.address = self.listener.address
        self._stopped = threading.Event()

    @property
    def uri(self) -> str:
        return f"mongostandin://{self.address[0]}:{self.address[1]}"

    def start(self) -> MongoStandin:
        threading.Thread(target=self._accept, name="mongo-standin", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        try:
            self.listener.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn = self.listener.accept()
            except Exception:  # noqa: BLE001 - closed listener or a failed handshake
                if self._stopped.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        with conn:
            while not self._stopped.is_set():
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                reply = self.call(*request)
                try:
                    conn.send(reply)
                except (EOFError, OSError):
                    return
                except Exception as exc:  # noqa: BLE001 - an unpicklable result
                    conn.send(("OperationFailure", f"stand-in: cannot send {exc!r}", None, None))

    def _collection(self, db: str, coll: str) -> Any:
        """The mongomock collection, switched (once, cheaply) to the faster classes above."""
        target = self.client[db][coll]
        target.__class__ = self._fast_collection
        store = target._store
        if type(store) is not self._fast_store:
            store.__class__ = self._fast_store
        return target

    def call(self, db: str, coll: str | None, method: str, args: tuple, kwargs: dict) -> tuple:
        try:
            with self.lock:
                if coll is None:
                    if method not in DATABASE_METHODS:
                        raise pymongo.errors.OperationFailure(f"stand-in: no database.{method}")
                    if method == "command":
                        return ("ok", {"ok": 1.0})
                    if method == "drop_database":
                        self.client.drop_database(db)
                        return ("ok", None)
                    return ("ok", getattr(self.client[db], method)(*args, **kwargs))
                if method not in COLLECTION_METHODS:
                    raise pymongo.errors.OperationFailure(f"stand-in: no collection.{method}")
                target = self._collection(db, coll)
                if method == "find":
                    sort, limit = kwargs.pop("_sort", None), kwargs.pop("_limit", 0)
                    cursor = target.find(*args, **kwargs)
                    if sort:
                        cursor = cursor.sort(sort)
                    if limit:
                        cursor = cursor.limit(limit)
                    return ("ok", list(cursor))
                if method == "create_indexes":
                    args = ([IndexModel(list(d.pop("key").items()), **d) for d in args[0]],)
                return ("ok", _result(method, getattr(target, method)(*args, **kwargs)))
        except pymongo.errors.BulkWriteError as exc:
            return ("BulkWriteError", exc.details)
        except pymongo.errors.PyMongoError as exc:
            return (
                type(exc).__name__,
                str(exc),
                getattr(exc, "code", None),
                getattr(exc, "details", None),
            )
        except Exception as exc:  # noqa: BLE001 - report to the caller, keep serving
            return ("OperationFailure", f"stand-in: {exc!r}", None, None)


# ----- client ---------------------------------------------------------------------------------------


def _raise(reply: tuple) -> None:
    kind = reply[0]
    if kind == "BulkWriteError":
        raise pymongo.errors.BulkWriteError(reply[1])
    cls = getattr(pymongo.errors, kind, pymongo.errors.OperationFailure)
    _, msg, code, details = reply
    if issubclass(cls, pymongo.errors.OperationFailure):
        raise cls(msg, code, details)
    raise cls(msg)


# MONGO_CLIENT_FACTORY for workers started against the stand-in (tasks/clients.py resolves it).
CLIENT_FACTORY = "localrun.mongo_standin:client_for"


def client_for(uri: str, timeout_ms: int = 5000) -> Any:
    """The stand-in's client for a mongostandin:// URI, pymongo's for any other."""
    if uri.startswith("mongostandin://"):
        return StandinClient(uri)
    from tasks.clients import pymongo_client

    return pymongo_client(uri, timeout_ms)


class StandinClient:
    """pymongo.MongoClient look-alike for `mongostandin://host:port`. Thread-safe, lazy."""

    def __init__(self, uri: str):
        u = urlparse(uri)
        self.address = (u.hostname or "127.0.0.1", u.port or 27999)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _call(self, db: str, coll: str | None, method: str, args: tuple, kwargs: dict) -> Any:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = Client(self.address, authkey=AUTHKEY)
                self._conn.send((db, coll, method, args, kwargs))
                reply = self._conn.recv()
            except (OSError, EOFError) as exc:
                self._drop()
                raise pymongo.errors.AutoReconnect(
                    f"mongo stand-in at {self.address}: {exc!r}"
                ) from exc
        if reply[0] != "ok":
            _raise(reply)
        return reply[1]

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = None

    def __getitem__(self, name: str) -> StandinDatabase:
        return StandinDatabase(self, name)

    def get_database(self, name: str) -> StandinDatabase:
        return StandinDatabase(self, name)

    def drop_database(self, name: str) -> None:
        self._call(name, None, "drop_database", (), {})

    @property
    def admin(self) -> StandinDatabase:
        return StandinDatabase(self, "admin")

    def close(self) -> None:
        with self._lock:
            self._drop()


class StandinDatabase:
    def __init__(self, client: StandinClient, name: str):
        self.client, self.name = client, name

    def __getitem__(self, coll: str) -> StandinCollection:
        return StandinCollection(self.client, self.name, coll)

    def __getattr__(self, method: str) -> Any:
        if method not in DATABASE_METHODS:
            raise AttributeError(method)
        return lambda *a, **kw: self.client._call(self.name, None, method, a, kw)


class StandinCursor:
    def __init__(self, coll: StandinCollection, args: tuple, kwargs: dict):
        self._coll, self._args, self._kwargs = coll, args, dict(kwargs)

    def sort(self, key: Any, direction: int = 1) -> StandinCursor:
        self._kwargs["_sort"] = key if isinstance(key, list) else [(key, direction)]
        return self

    def limit(self, n: int) -> StandinCursor:
        self._kwargs["_limit"] = n
        return self

    def __iter__(self):
        c = self._coll
        return iter(c.client._call(c.db, c.name, "find", self._args, self._kwargs))


class StandinCollection:
    def __init__(self, client: StandinClient, db: str, name: str):
        self.client, self.db, self.name = client, db, name

    def find(self, *args: Any, **kwargs: Any) -> StandinCursor:
        return StandinCursor(self, args, kwargs)

    def create_indexes(self, models: list[IndexModel], **kwargs: Any) -> Any:
        return self.client._call(
            self.db, self.name, "create_indexes", ([dict(m.document) for m in models],), kwargs
        )

    def __getattr__(self, method: str) -> Any:
        if method not in COLLECTION_METHODS:
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            res = self.client._call(self.db, self.name, method, args, kwargs)
            return (
                SimpleNamespace(**res)
                if isinstance(res, dict) and method not in ("find_one", "index_information")
                else res
            )

        return call


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m localrun.mongo_standin",
        description="Serve an in-memory MongoDB stand-in (mongomock) on loopback.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=27999)
    a = p.parse_args(argv)
    server = MongoStandin(a.host, a.port).start()
    print(f"mongo stand-in (NOT MongoDB; in memory) at {server.uri}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
