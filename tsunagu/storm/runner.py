"""`tsunagu storm`: a call storm on a deployed lab, measured and held against the SLA.

farm (started if the lab has none running) → Locust (headless, or a master with workers,
or its web UI) driving the scenario → calls in flight finish → the farm's events and the
PBX's CDRs are copied → metrics (RFC 6076, hunt groups, Erlang C) → SLA gates → JUnit XML
and the HTML report. Everything goes under the output folder:

    locust_stats.csv, locust_stats_history.csv, locust_failures.csv, locust.html, locust.log
    events.jsonl, cdrs.csv, metrics.json, gates.xml, report.html
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from simulator import events
from simulator.control import Farm, FarmError, open_farm

from . import capture, generator
from .scenario import Scenario

REPO = Path(__file__).resolve().parent.parent.parent
LOCUSTFILE = REPO / "loadtests" / "city_storm.py"
DEFAULT_SLA = REPO / "loadtests" / "sla.yaml"
CARRIER_SLOTS = 4  # call slots of one carrier worker (simulator/worker.py)
TYPICAL_RING_S = 10.0  # push wake-up plus answer delay of the farm's profiles, roughly
PROGRESS_EVERY_S = 10.0


def carrier_workers_for(scenario: Scenario, estate) -> int:
    """Enough carrier lines for the scenario's peak, citizens' calls out and staff's calls in
    sharing them: arrivals x (ringing + hold), with room."""
    rates = scenario.rates(estate)
    peak = (rates["citizen"] + rates["outbound"]) * max(p.x for p in scenario.load)
    concurrent = peak * (scenario.mean_hold_s() + TYPICAL_RING_S)
    return max(1, min(32, math.ceil(1.5 * concurrent / CARRIER_SLOTS)))


def start_farm(run_dir: Path, scenario: Scenario, estate, behaviour: str = "answer") -> Farm:
    """The farm for a storm: on duty all day, hold times compressed like the arrivals.

    `answer` (the default) has every handset answer after its profile's delay, on another
    call or not (call waiting), so every failed call is the system's, which is what the SLA's SER gate
    judges; `profiles` lets people be away or decline, as in life (then SEER is the figure)."""
    farm = Farm.start(run_dir, on_duty="always", behaviour=behaviour, hold_scale=1.0 / scenario.time_scale,
                      delay_scale=scenario.answer_delay_scale,
                      carrier_workers=carrier_workers_for(scenario, estate), count_retransmissions=True)
    print(f"farm started: {farm.settings['carrier_workers']} carrier workers; waiting for registrations", flush=True)
    got = farm.wait_registered(timeout_s=300)
    print(f"{got} handsets and carrier phones registered", flush=True)
    return farm


@contextmanager
def office_hours(run_dir: Path, estate, pin: bool = True):
    """Pin the PBX's clock to the estate's next office hour for the block, then put back
    what was there (a pinned moment, or the real time)."""
    from ..calendar import next_office_hour
    from ..secrets import ensure_secrets

    if not pin:
        yield None
        return
    db = capture.PbxDatabase(run_dir, ensure_secrets(estate)["services"]["postgres_kamailio"])
    before = db.clock()
    schedule = estate.schedules.get("default") or next(iter(estate.schedules.values()))
    moment = next_office_hour(schedule, datetime.now().astimezone()).isoformat()
    db.pin_clock(moment)
    print(f"the PBX's clock reads {moment} (office hours) for opening-hours routing", flush=True)
    try:
        yield moment
    finally:
        db.pin_clock(before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def locust_commands(run_dir: Path, estate_file: str, scenario_file: str, scenario: Scenario,
                    output: Path, workers: int, web: bool) -> list[list[str]]:
    """The master's command first, then one per worker (none when workers == 0)."""
    locust = str(Path(sys.executable).parent / "locust")
    common = [locust, "-f", str(LOCUSTFILE), "--run-dir", str(run_dir), "--scenario", scenario_file,
              "--estate", estate_file]
    users = 4 * scenario.streams  # the user classes take their fixed counts; this is an upper bound
    master = [*common, "-u", str(users), "-r", str(users), "--run-time", f"{int(scenario.duration_s)}s",
              "--stop-timeout", "5", "--csv", str(output / "locust"), "--csv-full-history",
              "--html", str(output / "locust.html"), "--logfile", str(output / "locust.log"),
              "--exit-code-on-error", "0"]
    if web:
        master += ["--web-host", "127.0.0.1", "--autostart", "--autoquit", "10"]
    else:
        master += ["--headless", "--only-summary"]
    if not workers:
        return [master]
    port = _free_port()
    master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
               "--expect-workers", str(workers)]
    worker = [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
              "--logfile", str(output / "locust-worker-{n}.log")]
    return [master] + [[a.replace("{n}", str(n)) for a in worker] for n in range(1, workers + 1)]


class Progress:
    """Counts the storm's calls from the farm's events, for a line every few seconds."""

    def __init__(self, redis, since_id: str):
        self.redis, self.cursor = redis, since_id
        self.counts = dict.fromkeys(("call_placed", "call_connected", "call_failed", "bye", "registered",
                                     "retransmit", "refused_no_slot"), 0)
        self.open: set[str] = set()  # caller-side calls not yet ended

    def update(self) -> None:
        while batch := self.redis.xrange(events.STREAM, min=f"({self.cursor}", count=5000):
            for entry_id, e in batch:
                self.cursor = entry_id
                kind = e["type"]
                if kind == "call_failed" and e.get("direction") == "in":
                    continue  # a member's branch ended (another answered, the caller gave up): not a failed call
                if kind in self.counts:
                    self.counts[kind] += 1
                if kind == "call_placed":
                    self.open.add(e["call_id"])
                elif kind in ("bye", "call_failed"):
                    self.open.discard(e.get("call_id", ""))

    def line(self) -> str:
        c = self.counts
        return (f"calls placed {c['call_placed']}, connected {c['call_connected']}, failed {c['call_failed']}, "
                f"in progress {len(self.open)}; registrations {c['registered']}; "
                f"retransmissions {c['retransmit']}")


def _generator_pids(farm: Farm, procs: list[subprocess.Popen]):
    def pids() -> list[int]:
        out = [p.pid for p in procs if p.poll() is None]
        if farm.pid:
            out.append(farm.pid)
        try:
            out += [w["pid"] for w in farm.workers().values()]
        except Exception:  # the farm's Redis went away; its processes go with it
            pass
        return out

    return pids


def storm(run_dir: Path, estate_file: str, scenario_file: str, output: Path, *, sla_file: str | None = None,
          locust_workers: int = 0, web: bool = False, behaviour: str = "answer") -> int:
    from ..estate import load_estate
    from ..secrets import ensure_secrets
    from .scenario import load_scenario

    estate = load_estate(estate_file)
    scenario = load_scenario(scenario_file)
    sla = _load_sla(sla_file)
    output.mkdir(parents=True, exist_ok=True)
    with office_hours(run_dir, estate, scenario.office_hours):
        try:
            farm = open_farm(run_dir)
            started_here = not farm.running()
        except FarmError:
            started_here = True
        if started_here:
            farm = start_farm(run_dir, scenario, estate, behaviour)
        try:
            expected = {k: round(v) for k, v in scenario.expected_calls(estate).items()}
            print(f"storm '{scenario.name}': {scenario.duration_s:.0f} s, about {expected} calls; "
                  f"{scenario.streams} Locust users per kind, {locust_workers or 'no'} Locust workers", flush=True)
            since_id = farm.redis.xinfo_stream(events.STREAM)["last-generated-id"]
            start_wall = time.time()
            commands = locust_commands(run_dir, str(Path(estate_file).resolve()), str(Path(scenario_file)),
                                       scenario, output, locust_workers, web)
            log = open(output / "locust.out", "ab")
            procs = [subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
                     for cmd in commands]
            log.close()
            sampler = generator.CpuSampler(_generator_pids(farm, procs)).start()
            progress = Progress(farm.redis, since_id)
            t0 = time.monotonic()
            while procs[0].poll() is None:
                try:
                    procs[0].wait(PROGRESS_EVERY_S)
                except subprocess.TimeoutExpired:
                    progress.update()
                    s = sampler.latest()
                    cpu = (f"; generator {100 * s.generator_cores:.0f} % of a core, machine {100 * s.machine:.0f} %"
                           if s else "")
                    print(f"  {time.monotonic() - t0:5.0f} s  {progress.line()}{cpu}", flush=True)
            for p in procs[1:]:
                p.wait(30)
            _drain(progress, estate)
            sampler.stop()
            locust_warned = "CPU usage above" in _read(output / "locust.log") + _read(output / "locust.out")
            n_events = capture.export_events(farm.redis, since_id, output / "events.jsonl")
            db = capture.PbxDatabase(run_dir, ensure_secrets(estate)["services"]["postgres_kamailio"])
            n_cdrs = db.export_cdrs(start_wall - 1.0, output / "cdrs.csv")
            print(f"copied {n_events} farm events and {n_cdrs} CDR rows", flush=True)
        finally:
            if started_here:
                farm.stop()
    return report(output, estate, sla, sampler.samples, locust_warned, procs[0].returncode,
                  run={"estate": estate_file, "scenario": scenario.name, "scenario_file": str(scenario_file),
                       "started": start_wall, "locust_workers": locust_workers, "run_dir": str(run_dir),
                       "command": " ".join(sys.argv)})


def _drain(progress: Progress, estate, limit_s: float | None = None) -> None:
    """Calls placed before Locust stopped still ring and hold: wait (bounded) for them to end."""
    longest = max((g.ring_limit_seconds for g in estate.hunt_groups), default=60)
    deadline = time.monotonic() + (limit_s or longest + 60)
    progress.update()
    while progress.open and time.monotonic() < deadline:
        print(f"  waiting for {len(progress.open)} calls in progress to end", flush=True)
        time.sleep(2.0)  # polling the event stream, bounded by the deadline
        progress.update()
    if progress.open:
        print(f"  {len(progress.open)} calls had not ended after {longest + 60} s; they count as they stand",
              flush=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _load_sla(sla_file: str | None):
    from .sla import load_sla

    return load_sla(sla_file or DEFAULT_SLA)


def report(output: Path, estate, sla, samples, locust_warned: bool, locust_rc: int | None, run: dict) -> int:
    """Metrics, gates, JUnit and the HTML report from what the storm left in `output`."""
    from . import metrics as storm_metrics
    from .junit import write_junit
    from .report import write_report
    from .sla import evaluate

    evs = storm_metrics.load_events(output / "events.jsonl")
    cdrs = storm_metrics.load_cdrs(output / "cdrs.csv")
    m = storm_metrics.compute(evs, cdrs, estate)
    m["generator"] = generator.verdict(
        samples, retransmissions=sum(1 for e in evs if e["type"] == "retransmit"),
        refused=sum(1 for e in evs if e["type"] in ("refused_no_slot", "command_failed") and e.get("request")),
        attempts=m["sessions"]["attempts"], locust_cpu_warning=locust_warned)
    (output / "metrics.json").write_text(json.dumps(m, indent=1, ensure_ascii=False))
    results = evaluate(sla, m, estate)
    write_junit(results, output / "gates.xml", f"tsunagu storm {run['scenario']}")
    run = {**run, "ended": time.time(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
           "output": str(output), "locust_exit_code": locust_rc}
    write_report(output / "report.html", m, results, run)
    breaches = [r for r in results if not r.passed]
    for r in results:
        print(f"  {'PASS' if r.passed else 'FAIL'}  {r.name}: {r.message}")
    print(f"{len(results) - len(breaches)} of {len(results)} SLA gates passed; report: {output / 'report.html'}")
    return 1 if breaches else 0


def _memory_gb() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0
