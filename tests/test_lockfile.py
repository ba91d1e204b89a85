"""requirements.lock is the lock of pyproject.toml's dependencies, and ./dev.sh refuses a stale one.

The lock is checked by content: a digest of pyproject.toml's requires-python, dependencies and
optional dependencies, recorded in the lock by `./dev.sh lock`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from localrun import lockfile

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_committed_lock_is_current():
    assert lockfile.problem() is None


def test_lock_pins_every_dependency_of_pyproject_and_the_dev_extra():
    project = tomllib.loads(lockfile.PYPROJECT.read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pinned = {
        _name(line)
        for line in lockfile.LOCK.read_text().splitlines()
        if re.match(r"^[A-Za-z0-9]", line) and "==" in line
    }
    assert wanted <= pinned, wanted - pinned
    assert {"hiredis", "kombu", "billiard"} <= pinned  # extras' and transitive ones too


def _copy(tmp_path: Path, pyproject_text: str) -> Path:
    (tmp_path / "localrun").mkdir()
    shutil.copy(ROOT / "dev.sh", tmp_path / "dev.sh")
    shutil.copy(ROOT / "localrun" / "lockfile.py", tmp_path / "localrun" / "lockfile.py")
    shutil.copy(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    (tmp_path / "pyproject.toml").write_text(pyproject_text)
    return tmp_path


def test_a_new_dependency_makes_dev_sh_stop_with_one_line(tmp_path):
    text = lockfile.PYPROJECT.read_text().replace('"tqdm>=4.66",', '"tqdm>=4.66",\n    "msgspec",')
    assert "msgspec" in text
    tree = _copy(tmp_path, text)
    done = subprocess.run(
        ["./dev.sh", "setup"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "VENV": str(tmp_path / "venv")},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "pyproject.toml's dependencies changed after requirements.lock was made: run ./dev.sh lock"
    ]
    assert not (tmp_path / "venv").exists()  # nothing installed from stale pins


def test_tool_settings_do_not_ask_for_a_new_lock(tmp_path):
    text = lockfile.PYPROJECT.read_text().replace("line-length = 100", "line-length = 99")
    assert text != lockfile.PYPROJECT.read_text()
    tree = _copy(tmp_path, text)
    assert lockfile.problem(tree / "pyproject.toml", tree / "requirements.lock") is None


def test_a_missing_or_unstamped_lock_is_named(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(lockfile.PYPROJECT.read_text())
    lock = tmp_path / "requirements.lock"
    assert "missing" in lockfile.problem(pyproject, lock)
    lock.write_text("celery==5.7.0\n")
    assert "no stamp" in lockfile.problem(pyproject, lock)
    lock.write_text(
        lockfile.stamped(lock.read_text(), lockfile.dependency_digest(pyproject.read_text()))
    )
    assert lockfile.problem(pyproject, lock) is None
    restamped = lockfile.stamped(lock.read_text(), "0" * 64)
    assert restamped.count(lockfile.STAMP_PREFIX) == 1 and "celery==5.7.0" in restamped
