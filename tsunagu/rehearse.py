"""`tsunagu rehearse`: the whole rehearsal of a city on this machine, stage by stage.

validate → plan → lab up → deploy → deploy again (must change nothing) → verify → handset
farm (every staff handset registers; the carrier calls every hunt group) → a short call
storm (Locust; RFC 6076 and hunt-group metrics, SLA gates, JUnit XML, the HTML report) →
lab down. Everything the run writes goes under its output folder (the storm's files under
`storm/`); the lab is taken down at the end even when a stage fails, unless --keep asks to
leave it up for inspection. The exit code is non-zero when a stage fails or a gate is
breached.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from .plan import plan as make_plan
from .views import plan_table, summary


class Stage:
    """Prints a stage's start and its duration, so a long run shows where it is."""

    def __init__(self, number: int, total: int, title: str):
        self.label = f"[{number}/{total}] {title}"

    def __enter__(self):
        print(f"\n== {self.label}", flush=True)
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        print(f"== {self.label}: {time.monotonic() - self.start:.1f} s", flush=True)


def rehearse(estate_file: str, output: Path, keep: bool, scenario_file: str = "smoke",
             sla_file: str | None = None, prefix: str | None = None) -> int:
    from . import lab, verify
    from .cli import load_or_exit
    from .deploy import run_playbook
    from .storm import runner
    from .storm.scenario import load_scenario

    stages = 8
    with Stage(1, stages, "validate and plan"):
        estate = load_or_exit(estate_file)
        topology = make_plan(estate)
        print(summary(estate), end="\n\n")
        print(plan_table(estate, topology))
        scenario = load_scenario(scenario_file)  # a bad scenario or SLA file stops the run here
        runner._load_sla(sla_file)
    if os.geteuid() != 0:
        print("tsunagu rehearse: the lab needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    layout = lab.layout(topology, prefix or lab.DEFAULT_PREFIX)
    failed, farm, cleanup = None, None, ExitStack()
    try:
        with Stage(2, stages, "lab up: a network namespace per site, the WAN, trunk links"):
            changes = lab.up(layout, output, estate_file, topology)
            print(f"{len(changes)} changes; state in {output / lab.STATE_FILE}")
        inventory = output / "inventory.yml"
        with Stage(3, stages, "deploy: Ansible configures every host"):
            rc, recap = run_playbook(inventory, estate, log=output / "deploy.log", brief=True)
            if rc != 0:
                failed = f"deploy failed (rc {rc}); see {output / 'deploy.log'}"
        if not failed:
            with Stage(4, stages, "deploy again: a second run must change nothing"):
                rc, recap = run_playbook(inventory, estate, log=output / "deploy-again.log", brief=True)
                if rc != 0 or recap.changed:
                    failed = (f"second deploy changed {recap.changed} things (rc {rc}); "
                              f"see {output / 'deploy-again.log'}")
        if not failed:
            with Stage(5, stages, "verify: testinfra on every host"):
                results = verify.verify(inventory)
                bad = [r.host for r in results if not r.ok]
                passed = sum(r.tests - r.failures for r in results)
                print(f"{passed} of {sum(r.tests for r in results)} checks passed on {len(results)} hosts")
                if bad:
                    failed = f"verify failed on {', '.join(bad)}; JUnit in {output / 'verify'}"
        if not failed:
            cleanup.enter_context(runner.office_hours(output, estate, scenario.office_hours))
            with Stage(6, stages, "handset farm: every handset registers, the carrier calls every hunt group"):
                farm = runner.start_farm(output, scenario, estate)
                failed = farm_stage(estate, farm)
        if not failed:
            with Stage(7, stages, f"call storm '{scenario.name}': Locust, metrics, SLA gates, report"):
                if runner.storm(output, estate_file, scenario_file, output / "storm", sla_file=sla_file) != 0:
                    failed = f"SLA gates breached; see {output / 'storm' / 'report.html'}"
    finally:
        try:
            cleanup.close()
        except Exception as exc:  # the lab may be too broken to put the clock back; it goes down anyway
            print(f"WARNING: {exc}", file=sys.stderr)
        if farm is not None and not farm.stop():
            print("WARNING: farm processes were left running", file=sys.stderr)
        if keep:
            print(f"\nthe lab stays up (--keep); take it down with: tsunagu lab down --run-dir {output}")
        else:
            with Stage(8, stages, "lab down: stop every service, remove every namespace"):
                lab.down(output, layout)
    print(f"\nrehearsal {'FAILED: ' + failed if failed else 'passed'}; everything is under {output}")
    report = output / "storm" / "report.html"
    if report.exists():
        print(f"report: {report}")
    return 1 if failed else 0


def call_batches(estate, groups: list[str], lines: int) -> list[list[str]]:
    """Groups to call at once, batch by batch: at most `lines` calls (the carrier's call
    slots), and no farm worker asked to ring more of its handsets than it has call slots
    (each call may take one slot on every worker that holds a member of its group)."""
    from simulator.assignment import CALL_SLOTS, assign

    worker_of = {e: w.id for w in assign(estate).workers for e in w.extensions}
    batches: list[tuple[list[str], dict[str, int]]] = []
    for gid in groups:
        rung = {worker_of[estate.person(m.staff).extension] for m in estate.group(gid).members}
        fit = next((b for b in batches if len(b[0]) < lines
                    and all(b[1].get(w, 0) < CALL_SLOTS for w in rung)), None)
        if fit is None:
            fit = ([], {})
            batches.append(fit)
        fit[0].append(gid)
        for w in rung:
            fit[1][w] = fit[1].get(w, 0) + 1
    return [b[0] for b in batches]


def farm_stage(estate, farm) -> str | None:
    """With the farm started (and waited for), check every staff handset registered and
    place one carrier call to every hunt group's published number. Returns a failure, or None.

    The PBX rings each number's hunt group; "answered" is reported here and gated by the
    storm's SLA gates, not by this stage. Registration of every handset is gated."""
    from simulator.events import HANDSETS

    from .numbering import group_numbers

    carriers = farm.settings["carrier_workers"]
    states = farm.redis.hgetall(HANDSETS)
    registered = sum(1 for p in estate.staff if states.get(p.extension, "").startswith("registered"))
    print(f"registered {registered} of {len(estate.staff)} staff handsets "
          f"(policy {farm.settings['policy']}); carrier phones "
          f"{sum(1 for k, v in states.items() if v.startswith('registered')) - registered}")
    numbers = {gid: published[0] for gid, published in group_numbers(estate).items()}
    outcome = {}
    for batch in call_batches(estate, list(numbers), lines=4 * carriers):
        requests = {gid: farm.dial(numbers[gid], hold_s=2.0) for gid in batch}
        outcome.update({gid: farm.outcome(r, estate.group(gid).ring_limit_seconds + 15)
                        for gid, r in requests.items()})
    answered = sum(1 for e in outcome.values() if e and e["type"] == "call_connected")
    for gid, e in outcome.items():
        result = "answered" if e and e["type"] == "call_connected" else (
            f"{e['type']} {e.get('status', '')} {e.get('reason', '')}" if e else "no outcome")
        print(f"  {gid:<20} {numbers[gid]:<14} {result}")
    print(f"hunt groups: {len(outcome)} called through the carrier, {answered} answered")
    bugs = farm.status()["refused_no_slot"]
    if registered < len(estate.staff) or bugs:
        return (f"farm: {registered} of {len(estate.staff)} handsets registered, {bugs} calls refused "
                f"for lack of a call slot; see {farm.dir}")
    return None


def _rehearse(args) -> int:
    from .cli import load_or_exit
    from .lab import default_run_dir

    output = Path(args.output) if args.output else default_run_dir(
        load_or_exit(args.estate).municipality.sip_domain)
    return rehearse(args.estate, output.resolve(), args.keep, args.scenario, args.sla, args.prefix)


def add_command(sub) -> None:
    from .cli import DEFAULT_ESTATE

    p = sub.add_parser("rehearse", help="rehearse a city on this machine (default: the small example)",
                       description="Validate and plan the estate, build the lab, deploy it with Ansible "
                       "(twice: the second run must change nothing), verify every host, and take the "
                       "lab down again.")
    p.add_argument("estate", nargs="?", default=str(DEFAULT_ESTATE), help="estate YAML file")
    p.add_argument("--output", help="folder for everything the run writes (default: runs/<city>/)")
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    p.add_argument("--scenario", default="smoke", help="the storm's scenario (default: smoke, about a minute)")
    p.add_argument("--sla", help="SLA file for the storm's gates (default: loadtests/sla.yaml)")
    p.add_argument("--prefix", help="name prefix of the lab's namespaces (default: tsu-), so two labs can "
                   "run side by side")
    p.set_defaults(func=_rehearse)
