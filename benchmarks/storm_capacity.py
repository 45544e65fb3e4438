"""The highest call rate and registration rate the whole stack sustains, by Tsunagu's own storms.

Needs root and a deployed lab (`tsunagu lab up` + `tsunagu deploy`) with no farm running.
The script starts the handset farm once (every handset answers, on duty all day, answer
delays and hold times compressed so each call holds a handset well under a second, enough
carrier workers for the citizen lines), then runs a series of short storms through
`tsunagu.storm.runner.storm()`, each from a scenario file it writes (constant load, no
curve), and reads each storm's `metrics.json`:

* calls: each step offers a fixed rate (calls/s), a share of it citizens calling the hunt
  groups through the carrier (in proportion to the estate's calls_per_hour) and the rest
  staff calling a colleague at another site. Per step: offered and placed calls/s, RFC 6076
  SER, SRD p95 (success), PBX processing p95 (CDR first_branch_ms, every call), callers'
  failure statuses, busy callees (a handset already on a call answers 486: the farm's, not
  the PBX's), generator CPU (farm + Locust), machine CPU, the Kamailio nodes' CPU and the
  whole PBX side's (Kamailio, PostgreSQL, rtpengine, Redis, bind, etcd), load average.
* registrations: each step is one registration storm (the farm's `reregister`: every handset
  registers again, digest auth, within `spread` seconds), spreads falling. Per step: offered
  registrations/s (handsets / spread), achieved (successes / first REGISTER to last 200),
  IRA, RRD p95, the same CPU figures.

A step whose generator saturated (metrics.json `generator.saturated`: a generator process at
>= 90 % of a core, the machine >= 95 % busy, Locust's CPU warning, or refused calls), or
that reached less than 90 % of its asked rate (calls placed per second; registrations
answered per second), is INVALID, never a pass. A call step passes with SER >= 99.9 %, a registration step with
IRA = 0 and every attempt answered. The series stops after two steps in a row that do not
pass. The answer is the highest passing step; everything is also written to
<out>/summary.json, each step's storm output under <out>/<step>/.

    TSUNAGU_SECRETS_DIR=/tmp/sb/secrets .venv/bin/python benchmarks/storm_capacity.py \\
        --run-dir /tmp/sb/run --out /tmp/sb/storm-cap --call-rates 1,2,4,8,16 --spreads 40,20,10,5,2
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm_registration import cpu_seconds, pss_mb  # noqa: E402

from simulator.control import Farm, FarmError, open_farm  # noqa: E402
from tsunagu.estate import load_estate  # noqa: E402
from tsunagu.storm.runner import storm  # noqa: E402

SER_TARGET = 99.9
KEEP_UP = 0.9  # a step must reach this share of its asked rate (Poisson arrivals vary ~5 % over 20 s)


# --- CPU of the PBX side -----------------------------------------------------------------

def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) of every process."""
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(p.name)] = (int(stat[1]), (p / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                pass
    return out


def pbx_pids(run_dir: Path) -> tuple[list[int], list[int]]:
    """(Kamailio pids, every PBX-side pid): processes started from the lab hosts' roots
    (<run dir>/hosts/...) and their children (PostgreSQL backends)."""
    procs = _procs()
    hosts = f"{run_dir}/hosts/"
    roots = {pid for pid, (_, cmd) in procs.items() if hosts in cmd and "ip netns exec" not in cmd}
    everything = set(roots)
    grew = True
    while grew:
        new = {pid for pid, (ppid, _) in procs.items() if ppid in everything} - everything
        everything |= new
        grew = bool(new)
    kamailio = [pid for pid in roots if procs[pid][1].startswith("/usr/sbin/kamailio")]
    return kamailio, sorted(everything)


def memory_gb() -> tuple[float, float]:
    info = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/meminfo")}
    return info["MemTotal"] / 1024 / 1024, info["MemAvailable"] / 1024 / 1024


# --- scenarios ----------------------------------------------------------------------------

def call_scenario(name: str, rate: float, citizen_share: float, estate, args) -> dict:
    """A constant `rate` calls/s: citizens at `citizen_share` of it, staff calls the rest."""
    ts = args.time_scale
    per_s = ts / 3600.0
    cph = sum(g.calls_per_hour for g in estate.hunt_groups)
    citizen, staff = rate * citizen_share, rate * (1 - citizen_share)
    return {"name": name, "description": f"{rate:g} calls/s, {citizen_share:.0%} citizens (storm_capacity.py)",
            "duration_s": args.step_seconds, "time_scale": ts, "streams": args.streams,
            "citizens": {"scale": round(citizen / (cph * per_s), 6) if cph else 0.0},
            "staff": {"per_staff_per_hour": round(staff / (len(estate.staff) * per_s), 6)},
            "outbound": {"per_staff_per_hour": 0.0},
            "hold_s": args.hold_ms / 1000.0 * ts, "answer_delay_scale": args.delay_scale}


def registration_scenario(name: str, spread: float, args) -> dict:
    return {"name": name, "description": f"every handset re-registers within {spread:g} s (storm_capacity.py)",
            "duration_s": spread + args.settle_seconds + 2, "time_scale": args.time_scale, "streams": 1,
            "citizens": {"scale": 0}, "staff": {"per_staff_per_hour": 0}, "outbound": {"per_staff_per_hour": 0},
            "registration_storms": [{"at_s": 2, "spread_s": spread}]}


# --- one step -----------------------------------------------------------------------------

def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def wait_for_quiet(max_load: float | None, max_wait_s: float) -> float:
    """On a shared machine: wait (bounded) until the 1-min load average is at most `max_load`."""
    t0 = time.monotonic()
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() - t0 < max_wait_s:
        time.sleep(5)  # polling the load average, bounded by max_wait_s
    return time.monotonic() - t0


def run_step(kind: str, label: str, scenario: dict, args, estate_file: str) -> dict:
    out = args.out / label
    waited = wait_for_quiet(args.max_load, args.max_wait)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True))
    kam, pbx = pbx_pids(args.run_dir)
    load0 = os.getloadavg()[0]
    k0, p0, w0 = cpu_seconds(kam), cpu_seconds(pbx), time.monotonic()
    with open(out / "storm.log", "w") as log, contextlib.redirect_stdout(log):
        storm(args.run_dir, estate_file, str(path), out, sla_file=args.sla)
    wall = time.monotonic() - w0
    k1, p1 = cpu_seconds(kam), cpu_seconds(pbx)
    m = json.loads((out / "metrics.json").read_text())
    evs = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    g = m["generator"]
    r = {"kind": kind, "step": label, "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
         "valid": not g["saturated"], "invalid_reason": g["reason"],
         "generator_cpu_mean": g["cpu_percent_mean"], "generator_cpu_peak": g["cpu_percent_peak"],
         "busiest_generator_process": g["busiest_process_percent"], "machine_cpu": g["machine_percent_mean"],
         "retransmissions": g["retransmissions"], "refused": g["refused"],
         "kamailio_cpu": round(100 * (k1 - k0) / wall, 1), "pbx_side_cpu": round(100 * (p1 - p0) / wall, 1),
         "step_wall_s": round(wall, 1), "waited_for_load_s": round(waited)}
    if kind == "calls":
        s = m["sessions"]
        placed = [float(e["wall"]) for e in evs if e["type"] == "call_placed"]
        span = (max(placed) - min(placed)) if len(placed) > 1 else scenario["duration_s"]
        branch = []
        with contextlib.suppress(FileNotFoundError), open(out / "cdrs.csv", newline="") as f:
            for row in csv.DictReader(f):
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    branch.append(float(row["first_branch_ms"]))
        failures = Counter(e.get("status", "?") for e in evs
                           if e["type"] == "call_failed" and e.get("direction") == "out")
        busy = sum(1 for e in evs if e["type"] == "rejected" and e.get("reason") == "on another call")
        r.update({"attempts": s["attempts"], "connected": s["connected"], "unresolved": s["unresolved"],
                  "placed_per_s": round(len(placed) / span, 2) if span > 0 else None,
                  "ser": s["ser_percent"], "srd_p95_ms": s["srd_success_ms"]["p95"],
                  "pbx_processing_p95_ms": _pct(branch, 95), "pbx_processing_n": len(branch),
                  "hunt_pbx_processing_p95_ms": m["hunt_overall"]["pbx_processing_ms"]["p95"],
                  "failure_statuses": dict(failures), "busy_callee_486": busy})
        r["passed"] = r["valid"] and s["attempts"] > 0 and (s["ser_percent"] or 0) >= SER_TARGET
    else:
        reg = m["registration"]
        sent = [float(e["wall"]) for e in evs if e["type"] == "register_sent"]
        done = [float(e["wall"]) for e in evs if e["type"] == "registered"]
        span = (max(done) - min(sent)) if sent and done else None
        r.update({"attempts": reg["attempts"], "successes": reg["successes"], "ineffective": reg["ineffective"],
                  "ira": reg["ira_percent"], "rrd_p95_ms": reg["rrd_ms"]["p95"], "rrd_p50_ms": reg["rrd_ms"]["p50"],
                  "achieved_per_s": round(reg["successes"] / span, 1) if span else None})
        r["passed"] = (r["valid"] and reg["attempts"] > 0 and reg["ineffective"] == 0
                       and reg["successes"] >= reg["attempts"])
    return r


# --- the series ---------------------------------------------------------------------------

def fmt(v, spec: str = ".1f", none: str = "—") -> str:
    return none if v is None else format(v, spec)


def print_call_row(r: dict, header: bool = False) -> None:
    if header:
        print(f"{'offered/s':>9} {'placed/s':>8} {'calls':>6} {'SER %':>7} {'SRD p95':>8} {'PBX p95':>8} "
              f"{'busy486':>7} {'gen CPU%':>8} {'busiest%':>8} {'machine%':>8} {'kam CPU%':>8} {'PBX CPU%':>8} "
              f"{'rtx':>5} {'load':>9}  verdict", flush=True)
        return
    verdict = ("PASS" if r["passed"] else "FAIL") if r["valid"] else f"INVALID ({r['invalid_reason']})"
    others = {k: v for k, v in r["failure_statuses"].items() if k != "486"}
    print(f"{r['offered_per_s']:>9g} {fmt(r['placed_per_s'], '.2f'):>8} {r['attempts']:>6} {fmt(r['ser'], '.2f'):>7} "
          f"{fmt(r['srd_p95_ms']):>8} {fmt(r['pbx_processing_p95_ms']):>8} {r['busy_callee_486']:>7} "
          f"{r['generator_cpu_mean']:>8.0f} {r['busiest_generator_process']:>8.0f} {r['machine_cpu']:>8.0f} "
          f"{r['kamailio_cpu']:>8.1f} {r['pbx_side_cpu']:>8.1f} {r['retransmissions']:>5} "
          f"{r['load_before']:>4.1f}/{r['load_after']:<4.1f}  {verdict}"
          + (f"  other failures {others}" if others else "")
          + (f"  unresolved {r['unresolved']}" if r["unresolved"] else ""), flush=True)


def print_reg_row(r: dict, header: bool = False) -> None:
    if header:
        print(f"{'spread s':>8} {'offered/s':>9} {'achieved/s':>10} {'attempts':>8} {'ok':>6} {'IRA %':>6} "
              f"{'RRD p50':>8} {'RRD p95':>8} {'gen CPU%':>8} {'busiest%':>8} {'machine%':>8} {'kam CPU%':>8} "
              f"{'PBX CPU%':>8} {'load':>9}  verdict", flush=True)
        return
    verdict = ("PASS" if r["passed"] else "FAIL") if r["valid"] else f"INVALID ({r['invalid_reason']})"
    print(f"{r['spread_s']:>8g} {r['offered_per_s']:>9.1f} {fmt(r['achieved_per_s']):>10} {r['attempts']:>8} "
          f"{r['successes']:>6} {fmt(r['ira'], '.2f'):>6} {fmt(r['rrd_p50_ms']):>8} {fmt(r['rrd_p95_ms']):>8} "
          f"{r['generator_cpu_mean']:>8.0f} {r['busiest_generator_process']:>8.0f} {r['machine_cpu']:>8.0f} "
          f"{r['kamailio_cpu']:>8.1f} {r['pbx_side_cpu']:>8.1f} {r['load_before']:>4.1f}/{r['load_after']:<4.1f}  "
          f"{verdict}", flush=True)


def _kept_up(r: dict, achieved: float | None, offered: float) -> None:
    """A step whose generator did not reach KEEP_UP of the asked rate measured a lower one:
    INVALID (its SER says nothing about the asked rate)."""
    if achieved is not None and achieved < KEEP_UP * offered:
        r.update(valid=False, passed=False,
                 invalid_reason=f"reached {achieved:g}/s of the {offered:g}/s asked")


def highest(rows: list[dict], key: str) -> dict | None:
    passed = [r for r in rows if r["passed"]]
    return max(passed, key=lambda r: r[key]) if passed else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="a deployed lab's run dir (no farm running)")
    ap.add_argument("--estate", help="estate YAML (default: the lab's)")
    ap.add_argument("--out", type=Path, required=True, help="where each step's storm output goes")
    ap.add_argument("--call-rates", default="1,2,4,8,16", help="calls/s per step, rising ('' = none)")
    ap.add_argument("--citizen-share", type=float, default=0.5, help="share of the calls from citizens")
    ap.add_argument("--spreads", default="40,20,10,5,2", help="registration storm spreads in s, falling ('' = none)")
    ap.add_argument("--step-seconds", type=float, default=30.0, help="length of each call step")
    ap.add_argument("--settle-seconds", type=float, default=10.0, help="after a registration storm's spread")
    ap.add_argument("--time-scale", type=float, default=600.0, help="the farm's hold times / this")
    ap.add_argument("--hold-ms", type=float, default=300.0, help="mean hold time of the callers' calls")
    ap.add_argument("--delay-scale", type=float, default=0.05, help="x the farm's answer delays")
    ap.add_argument("--streams", type=int, default=8, help="Locust users (Poisson streams) per kind of call")
    ap.add_argument("--carrier-workers", type=int, default=16, help="citizen lines: 4 call slots each")
    ap.add_argument("--sla", help="SLA file for the storms' gates (default loadtests/sla.yaml)")
    ap.add_argument("--pause", type=float, default=5.0, help="seconds between steps")
    ap.add_argument("--max-load", type=float, help="before each step, wait until the 1-min load average is at "
                    "most this (others share the machine)")
    ap.add_argument("--max-wait", type=float, default=300.0, help="longest wait for --max-load, in s")
    args = ap.parse_args(argv)
    args.run_dir = args.run_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    lab = json.loads((args.run_dir / "lab-state.json").read_text())
    estate_file = str(Path(args.estate or lab["estate"]).resolve())
    estate = load_estate(estate_file)
    with contextlib.suppress(FarmError):
        if open_farm(args.run_dir).running():
            print("a farm is already running on this lab; stop it first (tsunagu farm stop)", file=sys.stderr)
            return 2
    total_gb, avail_gb = memory_gb()
    print(f"estate {estate_file}: {len(estate.staff)} handsets, {len(estate.hunt_groups)} hunt groups; "
          f"{os.cpu_count()} cores, {total_gb:.1f} GB memory ({avail_gb:.1f} GB available); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    t0 = time.monotonic()
    farm = Farm.start(args.run_dir, estate_file, on_duty="always", behaviour="answer",
                      hold_scale=1.0 / args.time_scale, delay_scale=args.delay_scale,
                      carrier_workers=args.carrier_workers, count_retransmissions=True)
    summary = {"estate": estate_file, "handsets": len(estate.staff), "cores": os.cpu_count(),
               "memory_gb": round(total_gb, 1), "args": {k: str(v) for k, v in vars(args).items()},
               "calls": [], "registrations": []}
    try:
        got = farm.wait_registered(timeout_s=600)
        from tsunagu.storm.runner import _generator_pids  # the generator's processes, as storm() samples them

        farm_mb = pss_mb(_generator_pids(farm, [])())
        _, pbx = pbx_pids(args.run_dir)
        summary.update(registered=got, farm_start_s=round(time.monotonic() - t0, 1), farm_pss_mb=round(farm_mb),
                       pbx_pss_mb=round(pss_mb(pbx)))
        print(f"farm: {got} handsets and carrier phones registered in {time.monotonic() - t0:.0f} s, "
              f"{len(farm.workers())} workers, farm PSS {farm_mb:.0f} MB; PBX side PSS {pss_mb(pbx):.0f} MB; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        rates = [float(x) for x in args.call_rates.split(",") if x.strip()]
        if rates:
            print(f"\ncalls: {args.citizen_share:.0%} citizens through the carrier, the rest staff to staff; "
                  f"{args.step_seconds:g} s per step, mean hold {args.hold_ms:g} ms, "
                  f"answer delays x{args.delay_scale:g}"
                  "\n(PBX p95 = INVITE in to first branch out, every CDR; busy486 = callees already on a call)",
                  flush=True)
            print_call_row({}, header=True)
            misses = 0
            for rate in rates:
                label = f"calls-{rate:g}"
                r = run_step("calls", label, call_scenario(label, rate, args.citizen_share, estate, args),
                             args, estate_file)
                r["offered_per_s"] = rate
                _kept_up(r, r["placed_per_s"], rate)
                summary["calls"].append(r)
                (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
                print_call_row(r)
                misses = 0 if r["passed"] else misses + 1
                if misses >= 2:
                    break
                time.sleep(args.pause)
        spreads = [float(x) for x in args.spreads.split(",") if x.strip()]
        if spreads:
            got = farm.wait_registered(timeout_s=120)
            print(f"\nregistrations: every handset again within the spread (digest auth); {got} registered "
                  "before the series", flush=True)
            print_reg_row({}, header=True)
            misses = 0
            for spread in spreads:
                label = f"register-{spread:g}s"
                r = run_step("registrations", label, registration_scenario(label, spread, args), args, estate_file)
                r.update(spread_s=spread, offered_per_s=r["attempts"] / spread)
                _kept_up(r, r["achieved_per_s"], r["offered_per_s"])
                summary["registrations"].append(r)
                (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
                print_reg_row(r)
                misses = 0 if r["passed"] else misses + 1
                if misses >= 2:
                    break
                time.sleep(args.pause)
    finally:
        farm.stop(timeout_s=120)
    best_calls = highest(summary["calls"], "offered_per_s")
    best_reg = highest(summary["registrations"], "offered_per_s")
    summary["highest_calls_per_s"] = best_calls and best_calls["offered_per_s"]
    summary["highest_registrations_per_s"] = best_reg and round(best_reg["offered_per_s"], 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print()
    if summary["calls"]:
        print("highest call rate with SER >= 99.9 % and a valid generator: "
              + (f"{best_calls['offered_per_s']:g} calls/s (load {best_calls['load_before']:.1f})"
                 if best_calls else "none of the steps"))
    if summary["registrations"]:
        print("highest registration rate with IRA = 0 and a valid generator: "
              + (f"{best_reg['offered_per_s']:.1f} registrations/s (load {best_reg['load_before']:.1f})"
                 if best_reg else "none of the steps"))
    print(f"{os.cpu_count()} cores, {total_gb:.1f} GB; summary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
