"""Small modules with one job: no production module over about 400 lines, unless its top says why.

A module that must stay longer (a hot path that would pay for a split in calls, a table that
belongs together) says so in its first lines with the words "over 400 lines", and why; a
newcomer then reads the reason before the code.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("okx", "core", "collector", "tasks", "okxsim", "localrun", "web")
LIMIT = 420  # "about 400": a few lines of slack, not a second limit
HEAD_LINES = 40


def oversized(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Modules over LIMIT lines whose first HEAD_LINES lines do not say why."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            if len(lines) <= LIMIT:
                continue
            head = "\n".join(lines[:HEAD_LINES]).lower()
            if "over 400 lines" not in head:
                found.append(f"{path.relative_to(root)}: {len(lines)} lines")
    return found


def test_no_production_module_is_oversized_without_a_reason():
    assert oversized(ROOT) == []


def test_the_check_catches_a_long_module_and_accepts_a_stated_reason(tmp_path):
    pkg = tmp_path / "okx"
    pkg.mkdir()
    (pkg / "long.py").write_text("x = 1\n" * (LIMIT + 1))
    (pkg / "why.py").write_text('"""Over 400 lines: one hot loop."""\n' + "x = 1\n" * (LIMIT + 1))
    (pkg / "short.py").write_text("x = 1\n" * LIMIT)
    assert oversized(tmp_path, ("okx",)) == [f"okx/long.py: {LIMIT + 1} lines"]
