"""Publish claims: the redundant feeders of one shard push each record onto the queue once.

Two feeders of a shard (issue #19) receive the same records. Without claims each publishes
all of them, and the workers pay for the second copy: a task's fixed cost in Celery (~1 ms,
whether its records are then dropped or not) and decoding records only to find them already
stored (docs/redundancy-workers.md). With claims the second copy never becomes a task.

How: the feeder sends its cycle's tasks to ONE Lua script on the broker's Redis instead of a
plain LPUSH. Each record comes with its identity (core/identity.py: the same identity the
workers' duplicate check uses, the history document's natural key and state version). The
script, for every record, SADDs the identity into `claim:<shard>:<kind>:<scope>:<second>`
(core/keys.py); a record whose identity was already there (the other feeder pushed it) is left
out. It then assembles each task message from the records it kept and LPUSHes them, all in
the one atomic script. So a record is either pushed by this call or was pushed before by an
earlier call: no moment exists in which a record is claimed but not on the queue (a feeder
killed mid-call either ran the script or did not). Skipping is therefore as safe as the queue
itself; nothing is dropped that only one copy carried, because a copy is only ever skipped for
a record of the same identity that is already queued.

The message is assembled without any JSON or base64 code in Lua: every piece (the message's
head and tail, each envelope's head and tail, each record, the comma) is encoded here, each
padded with JSON whitespace to a multiple of 3 bytes, so that base64 pieces concatenate into
the base64 of the concatenated JSON. The script only chooses pieces and joins them. A worker
cannot tell such a message from a plain one (tests/test_claims.py decodes it with kombu).

Claims are used only while the shard has another live feeder (collector/publisher.py): one
feeder alone would pay an SADD per record for nothing. Claim sets live FEEDER_CLAIM_TTL (10 s
by default): they only need to outlast the delay between the two feeders' copies; a copy that
comes later is pushed and then dropped by the workers' own check (costing CPU, never data).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.celery_message import body_tail, message_parts
from core import contract, keys
from core.identity import identity

SCRIPT = """
local ttl = tonumber(ARGV[1])
local nmsg = tonumber(ARGV[2])
local comma = ARGV[3]
local i = 4
local out = {}
local skipped = 0
for m = 1, nmsg do
  local head, tail, nenv = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local parts, envs = {head}, 0
  for e = 1, nenv do
    local ehead, etail, nrec = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    i = i + 3
    local kept = {}
    for r = 1, nrec do
      local k = tonumber(ARGV[i])
      if k == 0 or redis.call('SADD', KEYS[k + 1], ARGV[i + 1]) == 1 then
        kept[#kept + 1] = ARGV[i + 2]
      else
        skipped = skipped + 1
      end
      i = i + 3
    end
    if #kept > 0 then
      if envs > 0 then parts[#parts + 1] = comma end
      parts[#parts + 1] = ehead
      parts[#parts + 1] = table.concat(kept, comma)
      parts[#parts + 1] = etail
      envs = envs + 1
    end
  end
  if envs > 0 then
    parts[#parts + 1] = tail
    out[#out + 1] = table.concat(parts)
  end
end
for k = 2, #KEYS do
  redis.call('PEXPIRE', KEYS[k], ttl)
end
local depth
if #out > 0 then
  depth = redis.call('LPUSH', KEYS[1], unpack(out))
else
  depth = redis.call('LLEN', KEYS[1])
end
return {depth, #out, skipped}
"""


def b64(piece: bytes) -> bytes:
    """`piece` padded with spaces to a multiple of 3 bytes, base64-encoded: such pieces join
    into the base64 of their joined bytes. Pieces end between JSON tokens, where spaces are
    allowed."""
    return base64.b64encode(piece + b" " * (-len(piece) % 3))


COMMA = b64(b",")


@dataclass
class TaskSpec:
    """One ingest task of a publish cycle: a per-kind task (one envelope) or a mixed one."""

    name: str
    argsrepr: str
    envelopes: list[dict[str, Any]]  # each with its "records"
    mixed: bool = False


@dataclass
class ClaimCall:
    """The script's KEYS and ARGV for one publish cycle."""

    keys: list[str]
    argv: list[Any] = field(default_factory=list)
    records: int = 0


def envelope_pieces(envelope: dict[str, Any]) -> tuple[bytes, bytes]:
    """(head, tail) of an envelope's JSON around its records: head ends with `"records":[`."""
    rest = {k: v for k, v in envelope.items() if k != "records"}
    return orjson.dumps(rest)[:-1] + b',"records":[', b"]}"


def build(
    specs: list[TaskSpec], shard: str, ttl_ms: int, queue: str = contract.INGEST_QUEUE
) -> ClaimCall:
    """KEYS = [queue, claim sets...], ARGV as SCRIPT reads it. A record without an identity
    (core.identity says None, or the record is not one it can read) is never claimed: always
    pushed."""
    call = ClaimCall(keys=[queue])
    index: dict[str, int] = {}
    argv = call.argv
    argv += [ttl_ms, len(specs), COMMA]
    for spec in specs:
        head, tail = message_parts(spec.name, queue, argsrepr=spec.argsrepr)
        opening = b"[[[" if spec.mixed else b"[["
        closing = (b"]]" if spec.mixed else b"]") + body_tail()
        argv += [head + b64(opening), b64(closing) + tail, len(spec.envelopes)]
        for env in spec.envelopes:
            kind = env["kind"]
            ehead, etail = envelope_pieces(env)
            records = env["records"]
            argv += [b64(ehead), b64(etail), len(records)]
            for rec in records:
                try:
                    ident = identity(kind, rec)
                except (KeyError, TypeError, ValueError):
                    ident = None  # the workers judge it; never skipped here
                if ident is None:
                    argv += [0, b"", b64(orjson.dumps(rec))]
                    continue
                _kind, scope, bucket, member = ident
                name = keys.claim(shard, kind, scope, bucket)
                k = index.get(name)
                if k is None:
                    k = index[name] = len(call.keys)
                    call.keys.append(name)
                argv += [k, member, b64(orjson.dumps(rec))]
            call.records += len(records)
    return call
