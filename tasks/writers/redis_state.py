"""Redis current-state writer: versioned hashes, deduplicated order events, capped trade sets.

Each state write goes through a Lua script (called by SHA), so "compare the version, then write" is
atomic: a late or redelivered batch never overwrites newer state, whichever worker runs it. One
batch is one pipeline (one round trip). Records are first reduced to the newest per key in Python
(`documents.newest`, same rule as the script), so 500 tickers of 5 instruments cost 5 calls.

Scripts touch keys they build themselves (order<N>); fine on a single Redis, not on Redis Cluster.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from redis.exceptions import NoScriptError

from core import keys
from core.settings import WorkerSettings as Settings
from tasks import documents

# KEYS[1] hash. ARGV[1] ttl (0 = none), ARGV[2] n, then n pairs (version field, value), then
# field/value pairs. Applies when the version is >= the stored one, compared component by
# component as numbers (a missing stored component counts as older). Returns 1 applied, 0 stale.
VERSIONED_HSET = """
local n = tonumber(ARGV[2])
local names = {}
for c = 1, n do names[c] = ARGV[1 + 2 * c] end
local cur = redis.call('HMGET', KEYS[1], unpack(names))
for c = 1, n do
  local old = tonumber(cur[c])
  local new = tonumber(ARGV[2 + 2 * c])
  if old == nil or new > old then break end
  if new < old then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3 + 2 * n))
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# One call per batch of order events. KEYS[1] the counter, KEYS[2..] the dedupe key of each
# event. ARGV[1] ttl (0 = none), ARGV[2] key prefix, ARGV[3] nf, ARGV[4..3+nf] field names, then
# nf values per event. For each event: if seen, -N; otherwise INCR, write order<N>, remember N,
# N. Atomic per batch, so one N per order event even when copies of a batch run concurrently.
ORDER_EVENTS = """
local ttl = tonumber(ARGV[1])
local prefix = ARGV[2]
local nf = tonumber(ARGV[3])
local out = {}
for e = 2, #KEYS do
  local seen = redis.call('GET', KEYS[e])
  if seen then
    out[#out + 1] = -tonumber(seen)
  else
    local n = redis.call('INCR', KEYS[1])
    local key = prefix .. n
    local base = 3 + nf + (e - 2) * nf
    local args = {}
    for f = 1, nf do
      args[2 * f - 1] = ARGV[3 + f]
      args[2 * f] = ARGV[base + f]
    end
    redis.call('HSET', key, unpack(args))
    if ttl > 0 then
      redis.call('EXPIRE', key, ttl)
      redis.call('SET', KEYS[e], n, 'EX', ttl)
    else
      redis.call('SET', KEYS[e], n)
    end
    out[#out + 1] = n
  end
end
return out
"""

# Events per ORDER_EVENTS call: bounds the time one script blocks Redis (~1 ms per 500).
ORDER_CHUNK = 500

SCRIPTS = {hashlib.sha1(src.encode()).hexdigest(): src for src in (VERSIONED_HSET, ORDER_EVENTS)}
VERSIONED_SHA, ORDER_EVENTS_SHA = SCRIPTS


def _flat(mapping: dict[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in mapping.items():
        out += (k, v)
    return out


class RedisState:
    """Writes checked records of one kind to Redis. `client` is a redis.Redis (or fakeredis)."""

    def __init__(self, client: Any, settings: Settings):
        self.client = client
        self.settings = settings

    # -- helpers ----------------------------------------------------------------------------
    def _hset(
        self, pipe: Any, key: str, version: documents.Version, fields: dict[str, str], ttl: int
    ) -> None:
        args: list[Any] = [ttl, len(version)]
        for name, value in version:
            args += (name, repr(value))
        pipe.evalsha(VERSIONED_SHA, 1, key, *args, *_flat(fields))

    def _load_scripts(self) -> None:
        for src in SCRIPTS.values():
            self.client.script_load(src)

    # -- per kind -----------------------------------------------------------------------------
    def write(self, kind: str, records: list[dict]) -> dict[str, int]:
        """Write records of `kind`; returns counts {"applied": n, "stale": m} (orders: new/seen)."""
        return self.write_many([(kind, records)])[0]

    def write_many(self, parts: list[tuple[str, list[dict]]]) -> list[dict[str, int]]:
        """Write several (kind, records) parts in one pipeline (one round trip); one count
        dict per part, as `write` returns.

        Scripts are called by SHA without asking Redis first (redis-py's registered scripts
        cost a SCRIPT EXISTS round trip per pipeline, a third of a small batch's write time).
        After a Redis restart or SCRIPT FLUSH the SHA is unknown: load the scripts and run the
        whole pipeline again, which is safe because every write in it is idempotent."""
        if not any(records for _kind, records in parts):
            return [{"applied": 0, "stale": 0} for _ in parts]
        try:
            return self._write_many(parts)
        except NoScriptError:
            self._load_scripts()
            return self._write_many(parts)

    def _write_many(self, parts: list[tuple[str, list[dict]]]) -> list[dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        spans = []
        for kind, records in parts:
            start = len(pipe)
            if not records:
                pass
            elif kind == "orders":
                self._orders(pipe, records)
            elif kind == "trades":
                self._trades(pipe, records)
            else:
                self._states(pipe, kind, records)
            spans.append((start, len(pipe)))
        results = pipe.execute()
        out = []
        for (kind, records), (a, b) in zip(parts, spans):
            part = results[a:b]
            if kind == "orders":
                numbers = [int(n) for chunk in part for n in chunk]
                new = sum(1 for n in numbers if n > 0)
                out.append({"applied": new, "stale": len(numbers) - new})
            elif kind == "trades":
                out.append({"applied": len(records), "stale": 0})
            else:
                applied = sum(int(r) for r in part)
                out.append({"applied": applied, "stale": len(part) - applied})
        return out

    def _orders(self, pipe: Any, records: list[dict]) -> None:
        fields = documents.ORDER_FIELDS
        for i in range(0, len(records), ORDER_CHUNK):
            chunk = records[i : i + ORDER_CHUNK]
            dedupe = [keys.order_event(r["ordId"], r["uTime"], r["state"]) for r in chunk]
            values: list[str] = []
            for rec in chunk:
                values += documents.order_hash(rec).values()
            pipe.evalsha(
                ORDER_EVENTS_SHA,
                1 + len(dedupe),
                keys.ORDER_COUNTER,
                *dedupe,
                self.settings.order_ttl_s,
                keys.ORDER_PREFIX,
                len(fields),
                *fields,
                *values,
            )

    def _trades(self, pipe: Any, records: Iterable[dict]) -> None:
        by_inst: dict[str, dict[bytes, float]] = defaultdict(dict)
        for rec in records:
            inst, member, score = documents.trade_member(rec)
            by_inst[inst][member] = score
        cap, ttl = self.settings.trades_cap, self.settings.state_ttl_s
        for inst, members in by_inst.items():
            key = keys.trades(inst)
            pipe.zadd(key, members)  # same trade twice = same member
            pipe.zremrangebyrank(key, 0, -(cap + 1))  # keep the newest `cap`
            if ttl > 0:
                pipe.expire(key, ttl)

    def _states(self, pipe: Any, kind: str, records: Iterable[dict]) -> None:
        s, d = self.settings, documents
        if kind == "balances":
            for ccy, (ver, rec) in d.newest(map(d.balance_key, records)).items():
                self._hset(pipe, keys.balance(ccy), ver, d.balance_fields(rec), s.account_ttl_s)
        elif kind == "positions":
            for pos, (ver, rec) in d.newest(map(d.position_key, records)).items():
                self._hset(pipe, keys.position(pos), ver, d.position_fields(rec), s.account_ttl_s)
        elif kind == "tickers":
            for inst, (ver, rec) in d.newest(map(d.ticker_key, records)).items():
                self._hset(pipe, keys.ticker(inst), ver, d.flat_fields(rec), s.state_ttl_s)
        elif kind == "candles":
            for ib, (ver, rec) in d.newest(map(d.candle_key, records)).items():
                inst, bar = ib.split("\x00", 1)
                self._hset(pipe, keys.candle(inst, bar), ver, d.flat_fields(rec), s.state_ttl_s)
        elif kind == "books":
            for inst, (ver, rec) in d.newest(map(d.book_key, records)).items():
                b5, top = d.book_fields(rec)
                self._hset(pipe, keys.books5(inst), ver, b5, s.state_ttl_s)
                self._hset(pipe, keys.book(inst), ver, top, s.state_ttl_s)
        else:
            raise ValueError(f"unknown kind {kind!r}")
