"""Is requirements.lock still the lock of pyproject.toml's dependencies? (`./dev.sh` asks.)

    python3 localrun/lockfile.py check    # exit 1 and one line when pyproject.toml changed since
    python3 localrun/lockfile.py stamp    # after `uv pip compile`: record what the lock was made of

The lock is uv's (`./dev.sh lock` runs `uv pip compile`); installs read it with plain pip, so a
fresh machine needs neither uv nor anything beyond PyPI. The stamp is the SHA-256 of the parts of
pyproject.toml that decide the lock (requires-python, dependencies, optional dependencies), so a
change to ruff's or pytest's settings does not ask for a new lock, and a new or changed
dependency does. Standard library only: dev.sh runs it with the system python3, before any venv.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
STAMP_PREFIX = "# pyproject.toml dependencies sha256: "
STAMP_RE = re.compile(r"^# pyproject\.toml dependencies sha256: ([0-9a-f]{64})\b", re.MULTILINE)


def dependency_digest(pyproject_text: str) -> str:
    """SHA-256 of what the lock depends on in pyproject.toml, independent of formatting."""
    project = tomllib.loads(pyproject_text).get("project", {})
    decisive = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock_text: str) -> str | None:
    m = STAMP_RE.search(lock_text)
    return m.group(1) if m else None


def stamped(lock_text: str, digest: str) -> str:
    """The lock text with one stamp line, first (an older stamp is dropped)."""
    rest = [
        line for line in lock_text.splitlines(keepends=True) if not line.startswith(STAMP_PREFIX)
    ]
    return f"{STAMP_PREFIX}{digest} (checked by ./dev.sh; refresh: ./dev.sh lock)\n" + "".join(rest)


def problem(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> str | None:
    """None when the lock matches pyproject.toml, else the one line to show."""
    if not lock.exists():
        return f"{lock.name} is missing: run ./dev.sh lock"
    digest = dependency_digest(pyproject.read_text())
    recorded = recorded_digest(lock.read_text())
    if recorded is None:
        return f"{lock.name} has no stamp of pyproject.toml: run ./dev.sh lock"
    if recorded != digest:
        return (
            f"pyproject.toml's dependencies changed after {lock.name} was made: run ./dev.sh lock"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["check"]:
        message = problem()
        if message:
            print(message, file=sys.stderr)
            return 1
        return 0
    if args == ["stamp"]:
        LOCK.write_text(stamped(LOCK.read_text(), dependency_digest(PYPROJECT.read_text())))
        return 0
    print("usage: python3 localrun/lockfile.py check|stamp", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
