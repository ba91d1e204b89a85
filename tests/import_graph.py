"""The module import graph of the project's own packages, read from the source (no imports run).

For the layout tests: which module imports which, and where the imports go in circles.

    graph = module_imports(ROOT, ["okx", "okxsim"])
    assert find_cycles(graph) == []

Every import statement counts, wherever it stands: at the top, inside functions and classes, and
under ``if TYPE_CHECKING:`` (a type-only import still ties the two modules together, and a
Protocol in a leaf module is the way out). Relative imports are resolved against the importing
module. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the tree,
else to ``pkg``. Imports of anything outside `packages` (stdlib, third party) are left out unless asked for, and
so are the parent packages Python runs on the way (``import a.b.c`` is one edge, to ``a.b.c``).

Dependency-free (ast and pathlib only), so any test can use it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

__all__ = ["find_cycles", "module_imports"]


def _modules(root: Path, packages: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package's __init__) for every .py under packages."""
    found: dict[str, tuple[Path, bool]] = {}
    for pkg in packages:
        base = root / pkg.replace(".", "/")
        single = base.with_suffix(".py")
        if single.is_file():
            found[pkg] = (single, False)
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts
            if any(not p.isidentifier() for p in parts):
                continue  # not importable as a module (e.g. a "my-script.py")
            if parts[-1] == "__init__":
                found[".".join(parts[:-1])] = (path, True)
            else:
                found[".".join(parts)] = (path, False)
    return found


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str | None:
    """The absolute name `from <level dots><target> import ...` means inside `module`."""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]  # a plain module's imports are relative to its package
    drop = level - 1
    if drop >= len(parts):
        return None  # beyond the top-level package: Python refuses it too
    base = parts[: len(parts) - drop]
    if target:
        base = base + target.split(".")
    return ".".join(base) or None


def _own(name: str, known: Mapping[str, object]) -> str | None:
    """`name` or its nearest enclosing module that is one of ours (a.b.c -> a.b if a.b.c is a
    class or function of module a.b), else None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _imported(
    tree: ast.AST, module: str, is_package: bool, known: Mapping[str, object], external: bool
) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _own(alias.name, known)
                if target is not None:
                    yield target
                elif external:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if alias.name != "*" and sub in known else _own(base, known)
                if target is not None:
                    yield target
                elif external and not node.level:
                    yield base


def module_imports(
    root: Path, packages: list[str], *, external: bool = False
) -> dict[str, set[str]]:
    """Every module under `packages` (dotted names, relative to `root`) -> the modules of those
    packages it imports. Each module of the tree is a key, with an empty set if it imports none.
    With `external`, imports of anything else (stdlib, third party) are edges too, by the name
    the import statement spells (``redis.exceptions``), so a rule can forbid a library."""
    known = _modules(Path(root), packages)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = set(_imported(tree, name, is_package, known, external))
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of `graph`: each strongly connected component of more than one module,
    and each module that imports itself, as a sorted list; the cycles sorted too. Edges to
    modules that are not keys of `graph` are ignored."""
    edges = {m: sorted(t for t in targets if t in graph) for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0

    # Tarjan's algorithm, iterative (a deep package tree must not hit the recursion limit).
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(edges[start])))
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    cycles.append(sorted(component))
    return sorted(cycles)
