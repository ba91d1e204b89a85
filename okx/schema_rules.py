"""The rules of okx/schemas.py and the one function that applies them: `check(schema, row)`.

A schema lists the documented fields of one kind with the rule each must satisfy and whether it
is required. Fields a schema does not name (OKX adds fields over time) are kept as received and
never a reason to reject; they are only JSON. The rules (docs/validation.md has the why):

    DEC / SDEC       an ASCII decimal string: digits, at most one dot with digits on both sides,
                     at most 40 digits either side of it; SDEC also allows one leading "-"
                     (pnl, upl, fee...)
    DEC_E / SDEC_E   the same, or "" (OKX's "not applicable": fillPx before a fill, bidPx on an
                     empty side, account fields of another account mode)
    ID / SID / ID_E  an integer id as ASCII digits, 1..19 of them (SID: maybe negative, fills'
                     tradeId of a liquidation or ADL; ID_E: or "")
    MS / MS_E        integer milliseconds, 1..14 ASCII digits (below datetime's year-9999 limit,
                     so a stored time always converts); MS_E: or ""
    STR / NSTR       any string / a non-empty string
    JINT             a JSON integer (not a bool) within int64 (seqId, prevSeqId, checksum)
    BOOL, LIST, OBJ  a JSON boolean / array / object
    a frozenset      one of these strings (an enum)

`check(schema, row)` returns None or the reason `"<field> <rule>: <detail>"`; the part before the
colon is a bounded label (field names come from the schema, never from the frame), so the feeder
counts rejections per channel and reason. `validate_row(kind_or_channel, row)` is the public
entry for tests and tools (okxsim's acceptance test uses it). Pure: no I/O.

The checks are str methods (isascii, isdigit, partition: C-level) in one loop per row, and one
regex over a whole side of book levels; no per-field function call on the hot path
(bench/parse.py measures it against the parser before validation).
"""

from __future__ import annotations

import re
from typing import Any

# ----- rules ---------------------------------------------------------------------------------

DEC, SDEC, DEC_E, SDEC_E = 1, 2, 3, 4
ID, SID, ID_E = 5, 6, 7
MS, MS_E = 8, 9
STR, NSTR = 10, 11
JINT, BOOL, LIST, OBJ = 12, 13, 14, 15

Rule = int | frozenset[str]
Schema = tuple[tuple[str, Rule, bool], ...]  # (field, rule, required)

MAX_DIGITS = 40  # digits either side of the dot: more is no price, size or balance of any market
MAX_ID_DIGITS = 19  # OKX ids are int64
MAX_MS_DIGITS = 14  # 99999999999999 ms is the year 5138; datetime stops at 9999
INT64 = 1 << 63

RULE_NAMES = {
    DEC: "decimal",
    SDEC: "signed-decimal",
    DEC_E: "decimal-or-empty",
    SDEC_E: "signed-decimal-or-empty",
    ID: "integer-id",
    SID: "signed-integer-id",
    ID_E: "integer-id-or-empty",
    MS: "milliseconds",
    MS_E: "milliseconds-or-empty",
    STR: "string",
    NSTR: "non-empty-string",
    JINT: "json-integer",
    BOOL: "json-boolean",
    LIST: "json-array",
    OBJ: "json-object",
}
_SIGNED = frozenset({SDEC, SDEC_E, SID})
_EMPTY_OK = frozenset({DEC_E, SDEC_E, ID_E, MS_E, STR})
_ABSENT = object()


def _show(value: Any) -> str:
    return repr(value)[:40]


def check(schema: Schema, row: Any) -> str | None:
    """None if `row` (a decoded JSON object) satisfies `schema`, else the reason."""
    if type(row) is not dict:
        return f"row object: must be a JSON object, got {type(row).__name__}"
    get = row.get
    for name, rule, required in schema:
        v = get(name, _ABSENT)
        if v is _ABSENT:
            if required:
                return f"{name} missing: required field {name!r} is absent"
            continue
        if type(rule) is int and rule <= MS_E:  # the string-of-digits rules
            if type(v) is not str:
                return _bad(name, rule, v)
            if not v:
                if rule in _EMPTY_OK:
                    continue
                return _bad(name, rule, v)
            s = v[1:] if v[0] == "-" and rule in _SIGNED else v
            if not s.isascii():
                return _bad(name, rule, v)
            if rule <= SDEC_E:
                if s.isdigit():
                    if len(s) <= MAX_DIGITS:
                        continue
                else:
                    head, _, tail = s.partition(".")
                    if (
                        head.isdigit()
                        and tail.isdigit()
                        and len(head) <= MAX_DIGITS
                        and len(tail) <= MAX_DIGITS
                    ):
                        continue
            elif rule <= ID_E:
                if s.isdigit() and len(s) <= MAX_ID_DIGITS:
                    continue
            elif s.isdigit() and len(s) <= MAX_MS_DIGITS:
                continue
            return _bad(name, rule, v)
        elif type(rule) is frozenset:
            if type(v) is not str or v not in rule:
                return f"{name} enum: field {name!r} must be one of {sorted(rule)}, got {_show(v)}"
        elif rule == STR:
            if type(v) is not str:
                return _bad(name, rule, v)
        elif rule == NSTR:
            if type(v) is not str or not v:
                return _bad(name, rule, v)
        elif rule == JINT:
            if type(v) is not int or not -INT64 <= v < INT64:
                return _bad(name, rule, v)
        elif rule == BOOL:
            if type(v) is not bool:
                return _bad(name, rule, v)
        elif rule == LIST:
            if type(v) is not list:
                return _bad(name, rule, v)
        elif rule == OBJ:
            if type(v) is not dict:
                return _bad(name, rule, v)
    return None


def _bad(name: str, rule: Rule, value: Any) -> str:
    what = RULE_NAMES[rule] if type(rule) is int else "enum"
    return f"{name} {what}: field {name!r} must be {what}, got {_show(value)}"


# A side of 4-field levels joined: px \x01 sz \x01 "0" \x01 count, levels joined by \x00.
_D = r"[0-9]{1,40}(?:\.[0-9]{1,40})?"
_I = r"[0-9]{1,19}"
_LEVEL4 = rf"{_D}\x01{_D}\x01{_I}\x01{_I}"
_LEVELS4 = re.compile(rf"{_LEVEL4}(?:\x00{_LEVEL4})*")
_LIST_ONLY = frozenset({list})
_FOUR = frozenset({4})


def check_levels(levels: list[Any], side: str) -> str | None:
    """None if every level is [px, sz, "0", orderCount] (px, sz decimals; the deprecated "0"
    and the count digits; older 2-field levels [px, sz] pass too; fields past the fourth are
    strings, kept), else the reason naming the side and the rule.

    The common case (every level a list of 4) is one join and one regex over the whole side:
    C-level work instead of ~8 Python-level checks per level. A field holding a separator
    character changes the separator counts, so it cannot fake a level's structure."""
    n = len(levels)
    if not n:
        return None
    if set(map(type, levels)) <= _LIST_ONLY and set(map(len, levels)) <= _FOUR:
        try:
            flat = "\x00".join(map("\x01".join, levels))
        except TypeError:
            flat = None
        if (
            flat is not None
            and flat.count("\x00") == n - 1
            and flat.count("\x01") == 3 * n
            and _LEVELS4.fullmatch(flat) is not None
        ):
            return None
    for level in levels:  # the slow path: the first bad level's reason (or a valid odd shape)
        if type(level) is not list or len(level) < 2 or len(level) == 3:
            return f"{side} level: a level must be [px, sz, '0', count], got {_show(level)}"
        for what, v in (("px", level[0]), ("sz", level[1])):
            reason = check(((what, DEC, True),), {what: v})
            if reason is not None:
                return f"{side} {reason}"
        for what, v in zip(("liquidated", "count"), level[2:4]):
            if type(v) is not str or not v.isascii() or not v.isdigit() or len(v) > MAX_ID_DIGITS:
                return f"{side} {what} integer: level {what} must be digits, got {_show(v)}"
        for v in level[4:]:
            if type(v) is not str:
                return f"{side} level: level fields are strings, got {_show(v)}"
    return None
