"""The layout's import rules (docs/architecture.md), read from the source so no change can
quietly break them: which package may import which, and no import cycles between modules.

Each rule is checked on the real tree, and the checker itself is run on a planted tree that
breaks every rule once, so this test cannot pass by checking nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import find_cycles, module_imports

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("okx", "core", "collector", "tasks", "web")
OWN = (*PRODUCTION, "okxsim", "localrun", "bench", "tests")
# Libraries okx/ may not use: it is the exchange as a library, with no storage or queue in it.
STORAGE_AND_QUEUES = ("redis", "celery", "kombu", "pymongo", "bson", "redbeat", "flower")

# (importer package, forbidden import prefixes, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "okx",
        (
            "core",
            "collector",
            "tasks",
            "web",
            "localrun",
            "bench",
            "tests",
            "okxsim",
            *STORAGE_AND_QUEUES,
        ),
        "okx/ is the exchange as a library",
    ),
    (
        "core",
        ("collector", "tasks", "web", "localrun", "bench", "tests", "okxsim"),
        "core/ is shared by feeder and workers, below both",
    ),
    (
        "collector",
        ("tasks", "web", "localrun", "bench", "tests", "okxsim"),
        "the feeder never imports the workers or the offline tooling",
    ),
    (
        "tasks",
        ("collector", "web", "localrun", "bench", "tests", "okxsim"),
        "the workers never import the feeder or the offline tooling",
    ),
    (
        "web",
        ("localrun", "bench", "tests", "okxsim"),
        "the web process is production code: it reads what the others wrote, no offline tooling",
    ),
    ("okxsim", PRODUCTION, "okxsim is an independent stand-in for the exchange"),
]


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a rule, as 'importer -> imported (why)'."""
    found = []
    for importer, imported in sorted(graph.items()):
        for package, forbidden, why in RULES:
            if _top(importer) != package:
                continue
            for target in sorted(imported):
                if any(_matches(target, prefix) for prefix in forbidden):
                    found.append(f"{importer} -> {target} ({why})")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_imports(ROOT, list(OWN), external=True)


def test_the_tree_keeps_every_package_rule(graph):
    assert any(_top(m) == "okx" for m in graph) and any(_top(m) == "tasks" for m in graph)
    assert violations(graph) == []


def test_no_import_cycles_between_modules(graph):
    own = {m: {t for t in targets if _top(t) in OWN} for m, targets in graph.items()}
    assert find_cycles(own) == []


def test_the_rules_catch_a_planted_violation_of_each(tmp_path):
    # Given a tree in which each package breaks its rule once, and two modules import each other
    files = {
        "okx/__init__.py": "",
        "okx/parse.py": "import redis\nfrom core import keys\n",
        "okx/book.py": "",
        "core/__init__.py": "",
        "core/keys.py": "from collector import driver\n",
        "collector/__init__.py": "",
        "collector/driver.py": "def f():\n    from tasks import ingest\n",
        "tasks/__init__.py": "",
        "tasks/ingest.py": "from localrun.demo import main\n",
        "okxsim/__init__.py": "",
        "okxsim/server.py": "from okx.book import OrderBook\nfrom . import ws\n",
        "okxsim/ws.py": "from okxsim import server\n",
        "localrun/__init__.py": "",
        "localrun/demo.py": "",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # When the checks read it
    planted = module_imports(
        tmp_path, ["okx", "core", "collector", "tasks", "okxsim", "localrun"], external=True
    )
    found = violations(planted)
    # Then every broken rule is reported, and the cycle too
    for expected in (
        "okx.parse -> redis",
        "okx.parse -> core.keys",
        "core.keys -> collector",
        "collector.driver -> tasks",
        "tasks.ingest -> localrun",
        "okxsim.server -> okx.book",
    ):
        assert any(v.startswith(expected) for v in found), (expected, found)
    cycles = find_cycles({m: {t for t in ts if _top(t) in OWN} for m, ts in planted.items()})
    assert any(set(c) == {"okxsim.server", "okxsim.ws"} for c in cycles), cycles
