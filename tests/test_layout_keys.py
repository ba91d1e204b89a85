"""Every Redis key, key pattern, task name and queue name is spelled once: in core/keys.py or
core/contract.py. Everything else uses their names.

`derive_names` reads what to look for from those two modules themselves (each key function is
called with stand-in arguments to get its shape, each string constant is taken as it is), so a
key or task added there tomorrow is covered at once. `scan_source` walks a module's syntax tree:

* a string literal, bytes literal or f-string (each {...} standing for any text) whose whole
  text has the shape of a key ("ticker:BTC", f"gap:{x}", "wm:*", f"order{n}", "gap:%s") or is a
  task name ("tasks.ingest.trades", f"tasks.ingest.{kind}", "tasks.backfill.*") is reported
  wherever it is;
* single words ("ingest", "backfill", "feeders", "unacked") are everyday words too (status JSON
  fields, CLI commands), so they are reported only where they name a queue, task or key: a
  `queue=`/`routing_key=`/`name=`/`task=` argument or dict entry, a task_routes-shaped dict key,
  an assignment to a `*_queue` setting, an argument of a Redis command or `send_task`, or a
  celery `-Q` value.

Docstrings and bare string statements are prose and are skipped; prose elsewhere (log messages)
does not have a key's whole shape ("gap %s created", "ticker: asked for ...").
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from core import contract, keys

ROOT = Path(__file__).resolve().parents[1]
SCANNED_PACKAGES = ("okx", "core", "collector", "tasks", "web")
SCANNED_FILES = ("celeryconfig.py",)
HOMES = ("core/keys.py", "core/contract.py")

HOLE = "\x00"  # an f-string's {...} in the rendered text
_ARG = "\x01{}\x01"  # stand-in argument when calling a key function
_ARG_RE = re.compile("\x01(\\d+)\x01")
_ANY = r"\S*"  # a key's variable part: any text without spaces
_NUMBER = r"(?:\d+|%s)" % HOLE  # an int parameter (order<N>): digits or an f-string hole

NAMING_KEYWORDS = frozenset({"queue", "routing_key", "name", "task", "default_queue"})
NAMING_DICT_KEYS = frozenset({"queue", "routing_key", "task"})
# assignments whose target names a queue, key or task (task_default_queue, UNACKED_KEY = ...)
NAMING_TARGETS = ("queue", "queues", "key", "keys", "prefix", "pattern", "task", "task_name")
# Redis commands as redis-py spells them, without the names that builtin containers share
# (dict.get, list.count, ...): `st.get("unacked")` reads a dict, not Redis.
_BUILTIN_METHODS = set(dir(dict)) | set(dir(list)) | set(dir(set)) | set(dir(str)) | set(dir(bytes))
REDIS_COMMANDS = frozenset(
    n for n in dir(redis.Redis) if not n.startswith("_") and n not in _BUILTIN_METHODS
)
CELERY_SENDERS = frozenset({"send_task", "signature"})


@dataclass(frozen=True)
class Names:
    shapes: tuple[re.Pattern[str], ...]  # whole-text shapes reported anywhere
    words: frozenset[str]  # single words reported in naming contexts only


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text!r} ({self.why})"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (tuple, list, frozenset, set)):
        for v in value:
            yield from _strings(v)


def _key_function_shapes(fn: Any) -> list[str]:
    """Regex sources for the keys `fn` builds: its whole shape, and, when the text before its
    first argument holds a ':', that prefix followed by anything (catches concatenation)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        stand_ins = [_ARG.format(i) for i in range(len(params))]
        built = fn(*stand_ins)
    except Exception:  # noqa: BLE001 - not a key function (or not callable with strings)
        return []
    if not isinstance(built, str) or not _ARG_RE.search(built):
        return []
    parts = _ARG_RE.split(built)  # text, index, text, index, ..., text
    regex = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
        else:
            annotation = str(params[int(part)].annotation)
            regex += _NUMBER if annotation in ("int", "<class 'int'>") else _ANY
    out = [regex]
    if ":" in parts[0]:
        out.append(re.escape(parts[0]) + _ANY)
    return out


def derive_names(keys_mod: ModuleType = keys, contract_mod: ModuleType = contract) -> Names:
    shapes: list[str] = []
    words: set[str] = set()
    collections = set(getattr(keys_mod, "COLLECTIONS", ()))

    def add_literal(text: str, kind: str) -> None:
        if re.fullmatch(r"\w+", text):
            words.add(text)
        else:
            shapes.append(re.escape(text))
            if text.endswith((":", ".")):  # a prefix: anything built on it, literal or f-string
                tail = _ANY if kind == "key" else r"\S*%s\S*" % HOLE
                shapes.append(re.escape(text) + tail)

    for name, value in vars(keys_mod).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) and value.__module__ == keys_mod.__name__:
            shapes += _key_function_shapes(value)
        elif isinstance(value, str) and value not in collections:
            add_literal(value, "key")
    for name, value in vars(contract_mod).items():
        if name.startswith("_"):
            continue
        if "TASK" in name:
            for text in _strings(value):
                add_literal(text, "task")
                if "." in text:  # f"tasks.ingest.{kind}": the name's dotted prefix + a hole
                    prefix = text.rsplit(".", 1)[0] + "."
                    shapes.append(re.escape(prefix) + r"\S*%s\S*" % HOLE)
        elif "QUEUE" in name:
            words.update(_strings(value))
    return Names(tuple(re.compile(s, re.S) for s in dict.fromkeys(shapes)), frozenset(words))


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value.decode("latin-1")
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    return None


def _elements(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return list(node.elts)
    return [node]


def scan_source(source: str, names: Names, path: str = "<string>") -> list[Finding]:
    """Literals in `source` that spell a Redis key/pattern, task name or queue name."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))  # docstrings, bare string statements
        if isinstance(node, ast.JoinedStr):  # its parts are judged as one text
            skip.update(id(n) for n in node.values if isinstance(n, ast.Constant))
    found: list[Finding] = []

    def word(node: ast.AST, why: str) -> None:
        for el in _elements(node):
            text = _text(el)
            if text is not None and id(el) not in skip and text in names.words:
                found.append(Finding(path, el.lineno, text, why))

    for node in ast.walk(tree):
        text = _text(node)
        if text is not None and id(node) not in skip:
            if any(p.fullmatch(text) for p in names.shapes):
                found.append(Finding(path, node.lineno, text, "key or task name"))
            for m in re.finditer(r"-Q\s*([\w,]+)", text):
                for q in m.group(1).split(","):
                    if q in names.words:
                        found.append(Finding(path, node.lineno, q, "-Q value"))
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in NAMING_KEYWORDS:
                    word(kw.value, f"{kw.arg}=")
            func = node.func
            attr = func.attr if isinstance(func, ast.Attribute) else None
            if attr in REDIS_COMMANDS or attr in CELERY_SENDERS:
                for arg in node.args:
                    word(arg, f"argument of {attr}()")
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if k is None:
                    continue
                if _text(k) in NAMING_DICT_KEYS:
                    word(v, f"{_text(k)!r} entry")
                if isinstance(v, ast.Dict):  # task_routes = {"backfill": {...}}
                    word(k, "routing key of a dict of options")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(
                isinstance(t, ast.Name) and t.id.lower().endswith(NAMING_TARGETS) for t in targets
            ):
                word(node.value, "assigned to a key/queue/task name")
        elif isinstance(node, (ast.List, ast.Tuple)):
            for before, el in zip(node.elts, node.elts[1:]):
                if _text(before) == "-Q":
                    text = _text(el) or ""
                    found += [
                        Finding(path, el.lineno, q, "-Q value")
                        for q in text.split(",")
                        if q in names.words
                    ]
    return found


def production_files() -> list[Path]:
    files = [p for pkg in SCANNED_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    files += [ROOT / f for f in SCANNED_FILES]
    return [p for p in files if p.relative_to(ROOT).as_posix() not in HOMES]


# ----- the tests -------------------------------------------------------------------------------


def test_names_come_from_keys_and_contract():
    names = derive_names()
    caught = [
        "gap:17",
        "gaps:open",
        "gaps:all",
        "gaps:seq",
        "wm:trades:BTC-USDT",
        "wm:*",
        "feeder:f1",
        "ticker:BTC-USDT",
        "books5:X",
        "book:X",
        "trades:X",
        "candle:X:1m",
        "balance:USDT",
        "position:1",
        "order:counter",
        "order:event:1:2:live",
        "order17",
        "order" + HOLE,
        "deadletters:spool",
        "backfill:stale:trades:X",
        "audit:X",
        "redbeat:lock",
        "tasks.ingest.trades",
        "tasks.ingest.mixed",
        "tasks.ingest.*",
        "tasks.backfill.repair_gap",
        "tasks.backfill.backfill",
        "tasks.backfill.sweep",
        "tasks.ingest." + HOLE,
    ]
    for text in caught:
        assert any(p.fullmatch(text) for p in names.shapes), text
    assert {"ingest", "backfill", "feeders", "unacked"} <= names.words
    # collection names double as record kinds and channels: not words to report
    assert not {"order", "trades", "books", "tickers", "gaps"} & names.words
    for text in ("orders", "trades", "tasks.backfill.tasks", "gap %s created", "feeder 1: x"):
        assert not any(p.fullmatch(text) for p in names.shapes), text


# (planted source, the text the scanner must report for it)
VIOLATIONS = [
    ('r.hgetall("ticker:BTC")', "ticker:BTC"),
    ("key = f'gap:{gap_id}'", "gap:" + HOLE),
    ('key = "gap:%s" % gap_id', "gap:%s"),
    ('names = r.scan_iter(match="wm:*")', "wm:*"),
    ("key = f'order{n}'", "order" + HOLE),
    ('r.hgetall(b"gap:" + gid)', "gap:"),
    ('app.send_task("tasks.backfill.repair_gap", args=[gid])', "tasks.backfill.repair_gap"),
    ('name = f"tasks.ingest.{kind}"', "tasks.ingest." + HOLE),
    ('routes = {"tasks.ingest.*": {"queue": q}}', "tasks.ingest.*"),
    ('app.send_task(name, queue="backfill")', "backfill"),
    ('opts = {"queue": "ingest", "expires": 5}', "ingest"),
    ('task_default_queue = "ingest"', "ingest"),
    ('UNACKED_KEY = "unacked"', "unacked"),
    ('n = r.llen("ingest")', "ingest"),
    ("line = f\"backlog {r.llen('ingest')}\"", "ingest"),
    ("line = f\"open {r.zcard('gaps:open')}\"", "gaps:open"),
    ('task_routes = {"backfill": {"queue": q}}', "backfill"),
    ('@app.task(name="backfill")\ndef f(): pass', "backfill"),
    ('ids = r.smembers("feeders")', "feeders"),
    ('cmd = ["celery", "-A", "tasks", "worker", "-Q", "ingest,backfill"]', "backfill"),
    ('cmd = "celery -A tasks worker -Q ingest"', "ingest"),
]


def test_scanner_catches_each_planted_violation():
    names = derive_names()
    for source, expected in VIOLATIONS:
        assert expected in [f.text for f in scan_source(source, names)], source


CLEAN = '''
"""Docstrings may say gap:17, wm:*, tasks.ingest.trades and `-Q ingest`."""
import logging

from core import contract, keys

log = logging.getLogger(__name__)
IMPORTS = ("tasks.ingest", "tasks.backfill.tasks")


def f(r, db, st, gid, inst, kind, exc):
    """So may function docstrings: ticker:BTC, tasks.backfill.repair_gap."""
    log.info("gap %s created: %s (%s)", gid, kind, inst)
    log.warning("sweep: re-sent %d gaps", 3)
    h = r.hgetall(keys.gap_key(gid))
    r.lpush(contract.INGEST_QUEUE, "msg")
    n = st.get("unacked", 0)
    out = {"feeders": [], "unacked": n, "queues": {}, "gap": gid}
    coll = db["order"]
    trades = db[keys.TRADES]
    if kind in ("trades", "orders", "books5", "candle1m", "backfill"):
        pass
    problem = f"feeder {gid}: no heartbeat for {keys.HEARTBEAT_TTL_S} s"
    raise ValueError(f"ticker: asked for {inst}, got {exc!r}")
'''


def test_scanner_reports_nothing_on_clean_code():
    assert scan_source(CLEAN, derive_names()) == []


def test_no_key_task_or_queue_literal_outside_keys_and_contract():
    names = derive_names()
    found: list[Finding] = []
    for path in production_files():
        found += scan_source(path.read_text(), names, path.relative_to(ROOT).as_posix())
    assert not found, "spell these with core/keys.py or core/contract.py names:\n" + "\n".join(
        map(str, found)
    )


def test_task_names_deployments_call_are_unchanged():
    assert contract.BACKFILL_ALIAS_TASK == "backfill"
    assert contract.BACKFILL_TASK == "tasks.backfill.backfill"
    assert contract.REPAIR_GAP_TASK == "tasks.backfill.repair_gap"
    assert contract.INGEST_MIXED_TASK == "tasks.ingest.mixed"
    assert contract.INGEST_TASKS == {k: f"tasks.ingest.{k}" for k in contract.KINDS}
    assert (
        contract.SWEEP_TASK,
        contract.AUDIT_TASK,
        contract.FILLS_TASK,
        contract.SNAPSHOT_TASK,
    ) == (
        "tasks.backfill.sweep",
        "tasks.backfill.audit",
        "tasks.backfill.sync_fills",
        "tasks.backfill.snapshot_account",
    )
    for name in (contract.BACKFILL_TASK, contract.REPAIR_GAP_TASK, contract.SWEEP_TASK):
        assert name.startswith(contract.BACKFILL_TASK_PREFIX)


def test_key_functions_and_patterns_share_their_prefix():
    import fnmatch

    assert fnmatch.fnmatchcase(keys.watermark_key("trades-all", "BTC-USDT"), keys.WATERMARK_PATTERN)
    assert fnmatch.fnmatchcase(
        keys.watermark_key("trades-all", "X"), keys.watermark_pattern("trades")
    )
    assert not fnmatch.fnmatchcase(
        keys.watermark_key("books", "X"), keys.watermark_pattern("trades")
    )
    assert keys.parse_watermark_key(keys.watermark_key("trades", "BTC-USDT")) == (
        "trades",
        "BTC-USDT",
    )
    assert fnmatch.fnmatchcase(keys.gap_key("7"), keys.GAP_PATTERN)
    assert fnmatch.fnmatchcase(keys.balance("USDT"), keys.BALANCE_PATTERN)
    assert fnmatch.fnmatchcase(keys.position("1"), keys.POSITION_PATTERN)
    assert fnmatch.fnmatchcase(keys.ticker("X"), keys.TICKER_PATTERN)
    # the stored key names a running deployment has must not change
    assert (keys.gap_key("7"), keys.watermark_key("trades", "X"), keys.feeder_key("f")) == (
        "gap:7",
        "wm:trades:X",
        "feeder:f",
    )
    assert (keys.GAPS_OPEN, keys.GAPS_ALL, keys.GAPS_SEQ, keys.FEEDERS) == (
        "gaps:open",
        "gaps:all",
        "gaps:seq",
        "feeders",
    )
    assert (keys.order_key(3), keys.ORDER_COUNTER, keys.order_event("a", "b", "c")) == (
        "order3",
        "order:counter",
        "order:event:a:b:c",
    )


def test_feeder_key_names_need_no_database_driver():
    import subprocess
    import sys

    code = "import sys, core.keys, core.contract; print('pymongo' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert out == "False"


def test_every_registered_task_is_named_in_the_contract():
    import tasks.backfill.tasks  # noqa: F401 - registers the backfill tasks
    import tasks.derive.tasks  # noqa: F401 - registers the derive task
    import tasks.ingest  # noqa: F401 - registers the ingest tasks
    from tasks.app import app

    registered = {n for n in app.tasks if not n.startswith("celery.")}
    named = {
        t
        for name, v in vars(contract).items()
        if "TASK" in name and "PREFIX" not in name and "GLOB" not in name
        for t in _strings(v)
    }
    assert registered == named
