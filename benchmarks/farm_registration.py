"""How many registered handsets the farm holds on this machine, and what it costs.

Needs root and a deployed lab (`tsunagu lab up` + `tsunagu deploy`). For each size N the
farm starts with the first N handsets of the estate (whole workers, so a little under N),
the script waits until all are registered, holds them for --hold seconds (they must stay
registered, with no failure), and prints: handsets registered and held, registration time
(farm start to the last 200 OK), CPU seconds of the farm's processes while registering,
their CPU share while holding, and memory (PSS) of the farm's processes.

    benchmarks/farm_registration.py --run-dir /tmp/tf/large-run --sizes 500,1000,2000,8728
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import events  # noqa: E402
from simulator.control import Farm  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def farm_pids(farm: Farm) -> list[int]:
    """The supervisor, the farm's Redis and every worker (forked by the supervisor)."""
    pids = [farm.pid] + [w["pid"] for w in farm.workers().values()]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(farm.dir / "redis.sock") in (p / "cmdline").read_text().replace("\0", " "):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / TICKS


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def system_cpu() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) / TICKS, (fields[3] + fields[4]) / TICKS  # total, idle+iowait


def measure(run_dir: Path, size: int, hold_s: float, timeout_s: float) -> dict:
    started = time.monotonic()
    sys0 = system_cpu()
    farm = Farm.start(run_dir, max_handsets=size, carrier_workers=0, spawn_rate=60)
    try:
        while len(farm.workers()) < expected_workers(farm):
            time.sleep(0.5)  # polling the supervisor's worker table until every worker is in it
        expected = sum(w["registering"] for w in farm.workers().values())
        got = farm.wait_registered(expected, timeout_s=timeout_s)
        reg_time = time.monotonic() - started
        pids = farm_pids(farm)
        cpu_reg = cpu_seconds(pids)
        sys1 = system_cpu()
        time.sleep(hold_s)
        cpu_hold = cpu_seconds(pids) - cpu_reg
        sys2 = system_cpu()
        held = farm.registration().get("registered", 0)
        failures = sum(1 for _, e in farm.redis.xrange(events.STREAM) if e["type"] == "register_failed")
        return {"asked": size, "handsets": expected, "registered": got, "held": held, "failures": failures,
                "workers": len(farm.workers()), "registration_s": reg_time, "farm_cpu_s": cpu_reg,
                "machine_busy_reg_pct": 100 * (1 - (sys1[1] - sys0[1]) / max(1e-9, sys1[0] - sys0[0])),
                "farm_cpu_hold_pct": 100 * cpu_hold / hold_s,
                "machine_busy_hold_pct": 100 * (1 - (sys2[1] - sys1[1]) / max(1e-9, sys2[0] - sys1[0])),
                "pss_mb": pss_mb(pids)}
    finally:
        farm.stop(timeout_s=120)


def expected_workers(farm: Farm) -> int:
    for _, e in farm.redis.xrange(events.STREAM, count=10):
        if e["type"] == "farm" and e.get("state") == "starting":
            return int(e["workers"])
    return 1 << 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a deployed lab's run dir")
    parser.add_argument("--sizes", default="500,1000,2000", help="comma-separated handset counts")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to hold the registrations")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    print(f"{'asked':>6} {'handsets':>8} {'registered':>10} {'held':>6} {'fail':>5} {'workers':>7} "
          f"{'reg s':>7} {'farm CPU s':>10} {'machine busy %':>14} {'hold CPU %':>10} {'hold busy %':>11} "
          f"{'PSS MB':>8} {'MB/handset':>10}", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(Path(args.run_dir), size, args.hold, args.timeout)
        print(f"{r['asked']:>6} {r['handsets']:>8} {r['registered']:>10} {r['held']:>6} {r['failures']:>5} "
              f"{r['workers']:>7} {r['registration_s']:>7.1f} {r['farm_cpu_s']:>10.1f} "
              f"{r['machine_busy_reg_pct']:>14.0f} {r['farm_cpu_hold_pct']:>10.1f} {r['machine_busy_hold_pct']:>11.0f} "
              f"{r['pss_mb']:>8.0f} {r['pss_mb'] / max(1, r['handsets']):>10.2f}", flush=True)
        time.sleep(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
