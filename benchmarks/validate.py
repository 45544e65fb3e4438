"""Benchmark: how long loading and validating an estate takes, and how it grows with staff.

    .venv/bin/python benchmarks/validate.py [--repeat 3]

Prints, per estate: staff, file size, best wall time of a full `load_estate`, CPU time
of that run, and the process's peak RSS, with the machine's CPU model and core count.
Generated estates (1,000 / 8,000 / 20,000 staff) show the growth; the examples are the
checked-in ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tsunagu.estate import load_estate
from tsunagu.generate import GENERIC, render

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def measure(path: Path, repeat: int) -> tuple[int, float, float]:
    best_wall, best_cpu, staff = float("inf"), 0.0, 0
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        estate = load_estate(path)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if wall < best_wall:
            best_wall, best_cpu, staff = wall, cpu, len(estate.staff)
    return staff, best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"{'estate':<34} {'staff':>6} {'size':>8} {'wall s':>7} {'cpu s':>7} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        estates = [REPO / "examples" / "small-city.yaml", REPO / "examples" / "large-city.yaml"]
        for staff in (1_000, 8_000, 20_000):
            path = Path(tmp) / f"generated-{staff}.yaml"
            profile = replace(GENERIC, staff=staff, sites=min(30, max(4, staff // 400)))
            path.write_text(render(profile, "benchmarks/validate.py"), encoding="utf-8")
            estates.append(path)
        for path in estates:
            staff, wall, cpu = measure(path, args.repeat)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            label = path.name if path.parent.name == "examples" else f"generated ({path.stem})"
            print(f"{label:<34} {staff:>6} {path.stat().st_size / 1e6:>6.2f}MB {wall:>7.2f} {cpu:>7.2f} "
                  f"{rss_mb:>7.0f}MB")


if __name__ == "__main__":
    main()
