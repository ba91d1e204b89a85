"""Run Procfile process types on this machine the way Heroku runs dynos, with honcho.

    python -m localrun.procfile [--log FILE] [--grace 30] web feeder worker beat

honcho does the work (one shell per process type, each in its own session, output multiplexed
with a name prefix, SIGTERM to each process group). Two things differ from `honcho start`:

- the grace period: honcho sends SIGKILL 5 s after SIGTERM; Heroku waits 30 s, and the worker
  needs most of them (soft shutdown, then it puts unacknowledged tasks back on the queue). Here
  the wait is Heroku's 30 s (`--grace`).
- `$PORT` is not invented: the caller's environment (the demo, a test) says where `web` listens.

The process stops everything when it gets SIGTERM or SIGINT, or when one process type exits,
like honcho. Its exit code is honcho's (the first process's, or 130/143 after a signal).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
HEROKU_GRACE_S = 30


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Process type -> command, in file order."""
    from honcho.environ import parse_procfile

    return dict(parse_procfile(path.read_text()).processes)


def run(
    names: list[str],
    *,
    procfile: Path = PROCFILE,
    output=None,
    grace_s: float = HEROKU_GRACE_S,
    env: dict[str, str] | None = None,
) -> int:
    import honcho.manager
    from honcho.printer import Printer

    commands = read_procfile(procfile)
    unknown = [n for n in names if n not in commands]
    if unknown:
        raise SystemExit(
            f"procfile: no process type {', '.join(unknown)} in {procfile} "
            f"(it has {', '.join(commands)})"
        )
    # honcho reads this module constant when it decides to SIGKILL (see the module docstring).
    honcho.manager.KILL_WAIT = grace_s
    manager = honcho.manager.Manager(Printer(output or sys.stdout, colour=False))
    env = dict(os.environ if env is None else env)
    for name in names:
        manager.add_process(name, commands[name], env=env, cwd=str(procfile.parent))
    manager.loop()
    return manager.returncode or 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m localrun.procfile",
        description="Run Procfile process types with Heroku's 30 s grace.",
    )
    p.add_argument("names", nargs="+", help="process types to run, e.g. web feeder worker beat")
    p.add_argument("--procfile", type=Path, default=PROCFILE)
    p.add_argument("--log", type=Path, help="write the processes' output here instead of stdout")
    p.add_argument(
        "--grace",
        type=float,
        default=HEROKU_GRACE_S,
        help="seconds between SIGTERM and SIGKILL (Heroku: 30)",
    )
    a = p.parse_args(argv)
    if a.log is None:
        return run(a.names, procfile=a.procfile, grace_s=a.grace)
    with open(a.log, "a", buffering=1) as out:
        return run(a.names, procfile=a.procfile, grace_s=a.grace, output=out)


if __name__ == "__main__":
    raise SystemExit(main())
