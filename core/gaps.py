"""One gap value and the ledger operations the feeder and the workers share.

A gap is a window of one (channel, instId) stream that was not collected: a reconnect, a seqId
break, a stale period, a publish overflow, the downtime between two runs, or a manual request.
Whoever finds one builds a `Gap`; `record_gap` stores it as a new open gap in the ledger, where
backfill (tasks/backfill/ledger.py: claim, progress, finish) repairs it.

Stored layout (keys in core/keys.py, one Redis hash per gap, every value a string):

    gap:<id>   id, channel, instId, start_ms, end_ms, start_id, end_id, cause, status, reason,
               feeder, created_ms, updated_ms    (written by record_gap, `Gap.to_fields`)
               + owner, lease_until, attempts, cursor, written, pages, enqueued_ms, done_ms,
                 last_error, failures, retry_at  (added by the workers' Lua scripts: `extra`)
    gaps:open  zset of the ids of gaps still to repair (open, filling, failed), score start_ms
    gaps:all   zset of every id, score created_ms, trimmed to GAPS_KEEP

This format is what running deployments hold: `to_fields` writes exactly the fields the ledger
wrote before the value existed, and `from_fields` reads every hash ever stored.

Statuses (core/contract.py GAP_STATUSES): open -> filling -> filled | unrepairable | covered, and
filling -> failed (an attempt failed; `reason` says why, `retry_at` when the sweep tries again)
-> filling. A hash stored before `failed` existed reads as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from core import contract, keys
from core.errors import BadGap

__all__ = ["BadGap", "Gap", "RECORD_FIELDS", "record_gap"]

# The fields a recorded gap's hash starts with, in the order the ledger has always written them.
RECORD_FIELDS = (
    "id",
    "channel",
    "instId",
    "start_ms",
    "end_ms",
    "start_id",
    "end_id",
    "cause",
    "status",
    "reason",
    "feeder",
    "created_ms",
    "updated_ms",
)
_INT_FIELDS = ("start_ms", "end_ms", "created_ms", "updated_ms")
_STR_FIELDS = (
    "channel",
    "instId",
    "start_id",
    "end_id",
    "cause",
    "status",
    "reason",
    "id",
    "feeder",
)
# A hash without these is not a gap; the other recorded fields default (empty, 0) as the old
# writer's `gap.get(..., "")` did.
_REQUIRED = ("id", "channel", "instId", "start_ms", "end_ms", "cause", "status")


@dataclass(frozen=True, slots=True)
class Gap:
    """One missed window of one stream.

    start_ms/end_ms: exchange times (ms) of the window's bounds. start_id/end_id: exclusive
    tradeId/seqId bounds when known, else "". A gap's end may precede its start (a private
    stream's records are not ordered by uTime across orders): stored as found, never refused,
    because refusing would raise in the feeder's data path.
    The ledger sets id, feeder (who recorded it), status and the times when it records the gap
    (`recorded`); `extra` holds the fields the workers add while repairing it, as stored.
    """

    channel: str
    instId: str
    start_ms: int
    end_ms: int
    cause: str
    start_id: str = ""
    end_id: str = ""
    reason: str = ""
    status: str = "open"
    id: str = ""
    feeder: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in _STR_FIELDS:
            value = getattr(self, name)
            if type(value) is not str:
                raise BadGap(f"gap {name} must be a string, got {value!r}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise BadGap(f"gap {name} must be a non-negative integer (ms), got {value!r}")
        if not self.channel:
            raise BadGap("gap channel must not be empty")
        if self.cause not in contract.GAP_CAUSES:
            raise BadGap(f"gap cause {self.cause!r} is not one of {contract.GAP_CAUSES}")
        if self.status not in contract.GAP_STATUSES:
            raise BadGap(f"gap status {self.status!r} is not one of {contract.GAP_STATUSES}")
        for pair in self.extra:
            if (
                type(pair) is not tuple
                or len(pair) != 2
                or type(pair[0]) is not str
                or type(pair[1]) is not str
                or pair[0] in RECORD_FIELDS
            ):
                raise BadGap(
                    f"gap extra field {pair!r} is not a (name, value) pair of strings "
                    "outside the recorded fields"
                )

    @property
    def key(self) -> tuple[str, str]:
        """(channel, instId): the stream the gap belongs to."""
        return self.channel, self.instId

    def recorded(self, gap_id: str, feeder: str, now_ms: int) -> Gap:
        """This gap as the ledger stores it: a new open gap `gap_id`, recorded by `feeder` now."""
        return replace(
            self, id=gap_id, feeder=feeder, status="open", created_ms=now_ms, updated_ms=now_ms
        )

    def to_fields(self) -> dict[str, str]:
        """The gap's Redis hash (RECORD_FIELDS, then `extra`); only a recorded gap has one."""
        if not self.id:
            raise BadGap("a gap has a Redis hash only once recorded (no id yet)")
        fields = {
            "id": self.id,
            "channel": self.channel,
            "instId": self.instId,
            "start_ms": str(self.start_ms),
            "end_ms": str(self.end_ms),
            "start_id": self.start_id,
            "end_id": self.end_id,
            "cause": self.cause,
            "status": self.status,
            "reason": self.reason,
            "feeder": self.feeder,
            "created_ms": str(self.created_ms),
            "updated_ms": str(self.updated_ms),
        }
        fields.update(self.extra)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Gap:
        """A stored gap hash (str or bytes keys and values, as redis-py returns them)."""
        h = {_text(k): _text(v) for k, v in fields.items()}
        missing = [name for name in _REQUIRED if name not in h]
        if missing:
            raise BadGap(f"stored gap {h.get('id', '?')} lacks {', '.join(missing)}")
        ints = {}
        for name in _INT_FIELDS:
            raw = h.get(name, "0")
            try:
                ints[name] = int(raw)
            except ValueError:
                raise BadGap(f"stored gap {h['id']}: {name} {raw!r} is not an integer") from None
        extra = tuple(sorted((k, v) for k, v in h.items() if k not in RECORD_FIELDS))
        return cls(
            channel=h["channel"],
            instId=h["instId"],
            cause=h["cause"],
            start_id=h.get("start_id", ""),
            end_id=h.get("end_id", ""),
            reason=h.get("reason", ""),
            status=h["status"],
            id=h["id"],
            feeder=h.get("feeder", ""),
            extra=extra,
            **ints,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Pipe(Protocol):
    def hset(self, name: str, *, mapping: Mapping[str, str]) -> Any: ...
    def zadd(self, name: str, mapping: Mapping[str, int]) -> Any: ...
    def zremrangebyrank(self, name: str, start: int, end: int) -> Any: ...
    def execute(self) -> Any: ...


class _Redis(Protocol):
    def incr(self, name: str) -> int: ...
    def pipeline(self, transaction: bool = ...) -> Any: ...


def record_gap(
    client: _Redis,
    gap: Gap,
    producer: str,
    now_ms: int,
    *,
    atomic: bool,
    covered_by: list[str] | None = None,
) -> Gap:
    """Store `gap` as a new open gap recorded by `producer`; returns it with its id.

    The id comes from gaps:seq (INCR), then the hash and both indexes are written in one round
    trip; `atomic` makes that a MULTI (a worker recording next to other workers), the feeder's
    single writer thread does without. `covered_by`: other feeders of the shard already cover
    its window (docs/redundancy.md): it is stored closed as `covered`, never in gaps:open."""
    gap_id = str(client.incr(keys.GAPS_SEQ))
    stored = gap.recorded(gap_id, producer, now_ms)
    if covered_by:
        names = ",".join(covered_by)
        stored = replace(
            stored,
            status="covered",
            extra=(*stored.extra, ("covered_by", names), ("done_ms", str(now_ms))),
            reason=f"covered by {names} when recorded",
        )
    pipe: _Pipe = client.pipeline(transaction=atomic)
    pipe.hset(keys.gap_key(gap_id), mapping=stored.to_fields())
    if not covered_by:
        pipe.zadd(keys.GAPS_OPEN, {gap_id: stored.start_ms})
    pipe.zadd(keys.GAPS_ALL, {gap_id: now_ms})
    pipe.zremrangebyrank(keys.GAPS_ALL, 0, -keys.GAPS_KEEP - 1)
    pipe.execute()
    return stored
