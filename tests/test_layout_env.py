"""Layout rules about the environment: only core/settings.py reads it, and importing a pure
module builds no Celery app and reads none of our variables."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("okx", "core", "collector", "tasks", "okxsim", "web")
TOP_LEVEL = ("celeryconfig.py", "flowerconfig.py")
ALLOWED = {"core/settings.py"}


def environment_reads(source: str) -> list[str]:
    """Each use of os.environ / os.getenv / os.putenv (or those names imported from os) in
    `source`, as 'line: what'."""
    tree = ast.parse(source)
    found: list[str] = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ("environ", "getenv", "putenv", "environb", "getenvb"):
                    imported.add(alias.asname or alias.name)
                    found.append(f"{node.lineno}: from os import {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "putenv", "environb", "getenvb")
        ):
            found.append(f"{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in imported:
            found.append(f"{node.lineno}: {node.id}")
    return found


def _production_files() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return files + [ROOT / name for name in TOP_LEVEL]


def test_only_core_settings_reads_the_environment():
    offenders = {}
    for path in _production_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        reads = environment_reads(path.read_text())
        if reads:
            offenders[rel] = reads
    assert offenders == {}


def test_core_settings_is_where_the_environment_is_read():
    assert environment_reads((ROOT / "core/settings.py").read_text())


@pytest.mark.parametrize(
    "planted",
    [
        "import os\nx = os.environ.get('REDIS_URL')\n",
        "import os\nx = os.getenv('REDIS_URL', '')\n",
        "import os\nos.putenv('A', 'b')\n",
        "from os import environ\nx = environ['A']\n",
        "from os import getenv as ge\nx = ge('A')\n",
        "import os\ndef f(env=None):\n    return os.environ if env is None else env\n",
    ],
)
def test_the_scanner_catches_a_planted_read(planted):
    assert environment_reads(planted)


def test_the_scanner_ignores_other_uses_of_os():
    assert environment_reads("import os\nprint(os.getpid(), os.path.join('a', 'b'))\n") == []


PURE = (
    "okx.parse",
    "okx.book",
    "core.keys",
    "core.contract",
    "tasks.documents",
    "tasks.backfill.plan",
)

# Every read of os.environ goes through a Mapping method; record any key that looks like ours.
_PROBE = """
import os, sys
read = []
real = os.environ
class Probe(dict):
    def __getitem__(self, k):
        read.append(k); return real[k]
    def get(self, k, d=None):
        read.append(k); return real.get(k, d)
    def __contains__(self, k):
        read.append(k); return k in real
os.environ = Probe(real)
os.getenv = lambda k, d=None: (read.append(k), real.get(k, d))[1]
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
ours = sorted({k for k in read if k.startswith(("REDIS", "MONGO", "OKX", "FEEDER", "BACKFILL",
                                                   "INGEST", "AUDIT", "LOG_", "BROKER", "WEB_",
                                                   "CELERY", "STATE_"))})
print("celery" in sys.modules, ",".join(ours))
"""


@pytest.mark.parametrize("module", PURE)
def test_importing_a_pure_module_builds_no_app_and_reads_no_setting(module):
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": "notaurl",
        "MONGODB_URI": "notaurl",
        "OKX_BOOK_PURE": "1",
        "PYTHONPATH": str(ROOT),
    }
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0].split(" ", 1) == ["False", ""], r.stdout


def test_all_pure_modules_together_build_no_app():
    code = (
        "import sys\n"
        f"for m in {PURE!r}: __import__(m)\n"
        "import tasks\n"
        "print('celery' in sys.modules, 'tasks.app' in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": "notaurl"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False False"


def test_the_app_is_built_on_first_access_with_every_task_registered():
    code = (
        "import tasks\n"
        "from core.contract import BACKFILL_TASK, INGEST_TASKS\n"
        "app = tasks.app\n"
        "assert tasks.celery is app and type(app).__name__ == 'Celery'\n"
        "import sys, tasks.app\n"
        "assert tasks.app is app and sys.modules['tasks.app'].app is app\n"
        "names = set(app.tasks)\n"
        "want = {BACKFILL_TASK, *INGEST_TASKS.values()}\n"
        "print(sorted(want - names))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
