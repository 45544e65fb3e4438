"""What the handset farm costs while its handsets only stay registered.

    .venv/bin/python benchmarks/farm_idle.py --run-dir /tmp/sc/run [--seconds 20]

Starts the farm on a deployed lab (every handset of the lab's estate, digest auth through
DNS SRV), waits until every handset registered, then samples the CPU time (utime + stime)
of every farm process (supervisor, workers, the farm's Redis) over --seconds while nothing
calls, and the wake-ups per second of each thread of three workers (voluntary context
switches): an idle farm should cost little beside the PBX it is meant to load. Needs root.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from farm_registration import cpu_seconds, farm_pids  # noqa: E402

from simulator.control import Farm  # noqa: E402


def wakeups(pid: int) -> dict[str, int]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text().splitlines()
        switches = int(next(line for line in status if line.startswith("voluntary_ctxt")).split()[1])
        out[f"{(task / 'comm').read_text().strip()}:{task.name}"] = switches
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    farm = Farm.start(args.run_dir.resolve(), on_duty="always", behaviour="answer", count_retransmissions=True)
    try:
        registered = farm.wait_registered(timeout_s=300)
        pids = farm_pids(farm)
        workers = [w["pid"] for w in farm.workers().values()][:3]
        c0, w0, t0 = cpu_seconds(pids), {p: wakeups(p) for p in workers}, time.monotonic()
        time.sleep(args.seconds)  # the measurement window
        c1, w1, dt = cpu_seconds(pids), {p: wakeups(p) for p in workers}, time.monotonic() - t0
        print(f"{registered} handsets registered; {len(pids)} farm processes; idle for {dt:.0f} s: "
              f"farm CPU {100 * (c1 - c0) / dt:.1f} % of one core; load average {os.getloadavg()[0]:.2f}")
        for p in workers:
            print(f"  worker {p}: " + ", ".join(f"{name.split(':')[0]} {(w1[p][name] - n) / dt:.1f}/s"
                                              for name, n in w0[p].items() if name in w1[p]))
    finally:
        farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
