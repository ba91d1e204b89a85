"""tests/import_graph.py on a planted package tree, then on okxsim itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.import_graph import find_cycles, module_imports

ROOT = Path(__file__).resolve().parents[1]


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


PLANTED = {
    # app.models <-> app.db through a function-level import: a cycle
    "app/__init__.py": "from .models import Model\n",
    "app/models.py": """\
        import json
        from app.db import connect

        class Model:
            pass
        """,
    "app/db.py": """\
        def connect():
            from . import models      # inside a function: still an edge
            return models
        """,
    # app.views -> app.context only under TYPE_CHECKING, and app.context -> app.views: a cycle
    "app/views.py": """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from .context import Context
        """,
    "app/context.py": "import app.views\n",
    # relative imports from a subpackage, one and two levels up, and a submodule import
    "app/sub/__init__.py": "from . import leaf\n",
    "app/sub/leaf.py": """\
        from ..db import connect
        from .. import models
        from ..sub.other import helper
        import os.path
        """,
    "app/sub/other.py": "def helper():\n    pass\n",
    # a module importing itself, and a package that is not scanned
    "app/selfish.py": "from app import selfish\n",
    "lib/__init__.py": "",
    "lib/tool.py": "import app.models\n",
}


def test_edges_cover_relative_function_level_and_type_checking_imports(tmp_path):
    _plant(tmp_path, PLANTED)
    graph = module_imports(tmp_path, ["app"])
    assert graph["app"] == {"app.models"}
    assert graph["app.models"] == {"app.db"}  # json is not ours
    assert graph["app.db"] == {"app.models"}  # function-level, relative
    assert graph["app.views"] == {"app.context"}  # TYPE_CHECKING
    assert graph["app.context"] == {"app.views"}
    assert graph["app.sub"] == {"app.sub.leaf"}  # `from . import leaf` in __init__
    # `from .. import models` goes to the submodule; `from ..db import connect` to the module
    assert graph["app.sub.leaf"] == {"app.db", "app.models", "app.sub.other"}
    assert graph["app.sub.other"] == set()
    assert graph["app.selfish"] == {"app.selfish"}
    assert "lib.tool" not in graph  # only the packages asked for


def test_from_package_import_name_that_is_not_a_module_is_an_edge_to_the_package(tmp_path):
    _plant(
        tmp_path,
        {
            "p/__init__.py": "VALUE = 1\n",
            "p/a.py": "from p import VALUE\n",
            "p/b.py": "from p.a import *\nfrom p.missing import x\n",
        },
    )
    graph = module_imports(tmp_path, ["p"])
    assert graph["p.a"] == {"p"}
    assert graph["p.b"] == {"p.a", "p"}  # star: the module; unknown submodule: its package


def test_find_cycles_reports_components_and_self_loops(tmp_path):
    _plant(tmp_path, PLANTED)
    cycles = find_cycles(module_imports(tmp_path, ["app"]))
    assert cycles == [["app.context", "app.views"], ["app.db", "app.models"], ["app.selfish"]]


def test_find_cycles_on_plain_graphs():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"outside"}}) == []  # edges off the graph are ignored
    # two cycles joined by a one-way edge stay two components
    assert find_cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}}) == [
        ["a", "b"],
        ["c", "d"],
    ]
    # a long chain does not hit the recursion limit
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(5000)}
    chain["m5000"] = {"m0"}
    assert [len(c) for c in find_cycles(chain)] == [5001]


def test_okxsim_has_no_import_cycle():
    graph = module_imports(ROOT, ["okxsim"])
    assert "okxsim.server" in graph and "okxsim.ws" in graph
    assert find_cycles(graph) == []


def test_okxsim_imports_nothing_of_the_collector():
    """okxsim is an independent stand-in for the exchange: none of okx, core, collector, tasks."""
    ours = ["okx", "core", "collector", "tasks", "localrun", "bench"]
    graph = module_imports(ROOT, ["okxsim", *ours])
    leaks = {
        m: sorted(t for t in targets if t.split(".")[0] != "okxsim")
        for m, targets in graph.items()
        if m.split(".")[0] == "okxsim"
    }
    assert {m: t for m, t in leaks.items() if t} == {}
