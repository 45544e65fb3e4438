"""Benchmark: wall time, CPU and peak memory of each stage of standing up an estate.

    .venv/bin/python benchmarks/rehearsal.py examples/small-city.yaml [--prefix tb-]

Runs `tsunagu lab up`, `deploy`, `deploy` again (must change nothing), `verify` and
`lab down` as separate commands. For each it prints wall time, the CPU time of the
command and all its children (Ansible forks, pytest runs), and the command's peak RSS;
after the deploy it also prints the proportional memory (PSS) of every process running
in the lab, which is what the deployed estate costs this machine. Needs root.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tsunagu.estate import load_estate
from tsunagu.netns import pids_by_namespace


def run(args: list[str], env: dict) -> tuple[int, float, float, float, str]:
    """(rc, wall s, cpu s, peak RSS MB, output) of one command and everything it started."""
    with tempfile.TemporaryFile("w+") as out:  # a pipe would fill up with Ansible's output
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        output = out.read()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(output[-3000:], file=sys.stderr)
    return rc, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output


def lab_pss_mb(prefix: str) -> tuple[int, float]:
    namespaces = [line.split()[0] for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.splitlines()
        if line.startswith(prefix)]
    pids = [pid for pids in pids_by_namespace(namespaces).values() for pid in pids]
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return len(pids), total_kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("estate")
    parser.add_argument("--prefix", default="tb-")
    args = parser.parse_args()
    estate = load_estate(args.estate)
    run_dir = Path(tempfile.mkdtemp(prefix="tsunagu-bench-", dir="/tmp"))
    run_dir.chmod(0o755)  # services run as their own users (postgres, etcd) and read it
    env = dict(os.environ, TSUNAGU_SECRETS_DIR=str(run_dir / "secrets"))
    cli = [sys.executable, "-m", "tsunagu.cli"]
    where = ["--run-dir", str(run_dir / "run")]
    stages = [
        ("lab up", ["lab", "up", args.estate, *where, "--prefix", args.prefix]),
        ("deploy", ["deploy", args.estate, *where]),
        ("deploy again", ["deploy", args.estate, *where]),
        ("verify", ["verify", args.estate, *where]),
        ("lab down", ["lab", "down", *where]),
    ]
    load = os.getloadavg()[0]
    print(f"{args.estate}: {len(estate.sites)} sites, {len(estate.staff)} handsets; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at start")
    print(f"{'stage':<14} {'rc':>3} {'wall s':>8} {'cpu s':>8} {'peak RSS':>9}")
    failed = False
    for name, stage in stages:
        rc, wall, cpu, rss, output = run(cli + stage, env)
        changed = re.search(r"^deploy: .*(changed=\d+)", output, re.M)
        print(f"{name:<14} {rc:>3} {wall:>8.1f} {cpu:>8.1f} {rss:>7.0f}MB {changed[1] if changed else ''}",
              flush=True)
        if name == "deploy again" and changed and changed[1] != "changed=0":
            rc = 1  # not idempotent
        if name == "deploy" and rc == 0:
            processes, pss = lab_pss_mb(args.prefix)
            print(f"{'  lab services':<14} {processes:>3} processes, {pss:.0f} MB PSS in total", flush=True)
        if rc != 0 and name != "lab down":
            failed = True
            subprocess.run(cli + stages[-1][1], env=env, check=False)
            break
    if failed:
        print(f"logs and secrets kept in {run_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
