"""Worker CPU per message with two redundant feeders against one: real processes, one run.

    python -m bench.redundant_cpu [--phase-s 60] [--rounds 2] [--json]

bench/redundant.py's stack (bench/redundant_stack.py: okxsim at OKX's 100 ms cadence on 9
instruments with books, books5, trades-all, tickers and orders; redis-server; the MongoDB
wire-protocol server; one Celery worker with 2 pool processes; RedBeat beat). feeder-a runs
throughout; feeder-b is started and stopped with SIGTERM (a clean stop leaves the shard at once)
so that each round has three phases: one feeder; two feeders (their defaults: claims, feeder-b
the standby); two feeders without claims (feeder-b with FEEDER_CLAIM_TTL=0: it pushes every
record, and the workers drop its copies, as before claims). Every phase waits SETTLE_S after
the switch (feeder-b live or gone, and feeder-a's view of the shard, refreshed at each
heartbeat, following), then takes over --phase-s seconds:

    worker CPU   utime + stime of the worker's process tree (the Celery main process and its
                 pool children, /proc), whatever they did: ingest, history, derive, backfill
    messages     the WebSocket frames okxsim sent to feeder-a's connections (the feed's rate is
                 the same in every phase; with two feeders each frame reaches both)
    claimed      feeder-b's records left out at publish (feeder_claimed_by_peer_records)

and prints CPU per message per phase and the ratios of the two-feeder phases to the one-feeder
phase of the same round (medians over the rounds).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redundant_stack import RedundantStack
from okxsim.config import DEFAULT_INSTRUMENTS
from tests.polling import wait_for

MODES = {"one": "1", "claims": "2", "plain": "2, no claims"}
SETTLE_S = 12.0  # a heartbeat (5 s) each way, and feeder-b's connect and first books
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """utime + stime of `pid` and its descendants now alive (seconds)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += [c for c, pp in parents.items() if pp == p]
    return total


def metric(port: int, name: str) -> float:
    """One sample of a feeder's /metrics (0 when it has none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
    )


def frames_sent(s: RedundantStack, conns: list[Any]) -> int:
    return int(s.sim.call(lambda ex: sum(c.sent for c in conns)))


def phase(s: RedundantStack, conns: list[Any], seconds: float, two: bool) -> dict[str, float]:
    assert s.worker is not None
    c0, m0, t0 = tree_cpu_s(s.worker.pid), frames_sent(s, conns), time.monotonic()
    k0 = metric(s.ports["feeder-b"], "feeder_claimed_by_peer_records_total") if two else 0.0
    time.sleep(seconds)  # the measurement window itself (a bench: timing is its job)
    c1, m1, t1 = tree_cpu_s(s.worker.pid), frames_sent(s, conns), time.monotonic()
    k1 = metric(s.ports["feeder-b"], "feeder_claimed_by_peer_records_total") if two else 0.0
    return {"cpu_s": c1 - c0, "messages": m1 - m0, "wall_s": t1 - t0, "claimed": k1 - k0}


def run(phase_s: float, rounds: int, workdir: Path) -> dict[str, Any]:
    s = RedundantStack(workdir, DEFAULT_INSTRUMENTS, full_every_s=60.0)
    out: dict[str, Any] = {mode: [] for mode in MODES}
    try:
        s.start_worker()
        s.start_beat()
        s.start_named_feeder("feeder-a")
        wait_for(lambda: s.live("feeder-a"), 60, interval=0.2, what="feeder-a live\n" + s.logs())
        time.sleep(SETTLE_S)  # past the startup gap's backfill and the first full books
        conns = s.sim.call(lambda ex: list(ex.hub.conns))  # feeder-a's only, so far
        for _ in range(rounds):
            out["one"].append(phase(s, conns, phase_s, two=False))
            for mode, env in (("claims", {}), ("plain", {"FEEDER_CLAIM_TTL": "0"})):
                s.start_named_feeder("feeder-b", **env)
                wait_for(lambda: s.live("feeder-b"), 60, interval=0.2, what="b\n" + s.logs())
                time.sleep(SETTLE_S)
                out[mode].append(phase(s, conns, phase_s, two=True))
                os.killpg(s.feeders["feeder-b"].pid, signal.SIGTERM)
                s.feeders["feeder-b"].wait(30)
                time.sleep(SETTLE_S)
        out["conns_still_open"] = s.sim.call(lambda ex: sum(c in ex.hub.conns for c in conns))
        out["conns"] = len(conns)
    finally:
        s.stop()
    return out


def us(p: dict[str, float]) -> float:
    return p["cpu_s"] / max(p["messages"], 1) * 1e6


def summary(res: dict[str, Any]) -> dict[str, float]:
    """Median us/msg per mode, and the median over rounds of each round's two / one."""
    fig = {f"us_per_msg_{m}": statistics.median(us(p) for p in res[m]) for m in MODES}
    for m in ("claims", "plain"):
        fig[f"ratio_{m}"] = statistics.median(
            us(two) / us(one) for one, two in zip(res["one"], res[m])
        )
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase-s", type=float, default=60.0, help="measured seconds per phase")
    p.add_argument("--rounds", type=int, default=2, help="one-feeder + two-feeder phase pairs")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.phase_s <= 0 or a.rounds < 1:
        p.error("--phase-s must be positive and --rounds at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack on the way out
    res = run(a.phase_s, a.rounds, Path(tempfile.mkdtemp(prefix="redundant-cpu-")))
    fig = summary(res)
    if a.json:
        print(orjson.dumps({**res, **fig}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'round':>6} {'feeders':>13} {'messages':>9} {'msg/s':>7} {'worker cpu s':>12} "
          f"{'us/msg':>7} {'b claimed':>9}")  # fmt: skip
    for i in range(len(res["one"])):
        for mode in MODES:
            ph = res[mode][i]
            print(
                f"{i + 1:>6} {MODES[mode]:>13} {ph['messages']:>9.0f} "
                f"{ph['messages'] / ph['wall_s']:>7.0f} {ph['cpu_s']:>12.2f} {us(ph):>7.1f} "
                f"{ph['claimed']:>9.0f}"
            )
    print(
        f"median us/msg: one feeder {fig['us_per_msg_one']:.1f}, two {fig['us_per_msg_claims']:.1f}"
        f", two without claims {fig['us_per_msg_plain']:.1f}; two / one (median of the rounds' "
        f"ratios): {fig['ratio_claims']:.2f}, without claims {fig['ratio_plain']:.2f} "
        f"(feeder-a's {res['conns_still_open']} of {res['conns']} connections open throughout)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
