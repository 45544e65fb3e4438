"""`tsunagu storm`: a call storm against a lab that is up and deployed.

    tsunagu storm --run-dir runs/kinokawa --scenario morning-peak --output out/storm
    tsunagu storm --run-dir runs/kinokawa --scenario disaster-surge --locust-workers 2
    tsunagu storm --run-dir runs/kinokawa --web            # Locust's web UI on 127.0.0.1:8089
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _storm(args) -> int:
    from .cli import EXIT_INVALID, load_or_exit
    from .farm_cli import _run_dir
    from .problems import EstateInvalid
    from .storm import runner
    from .storm.scenario import load_scenario

    run_dir = _run_dir(args).resolve()
    lab_state = run_dir / "lab-state.json"
    if not lab_state.exists():
        print(f"tsunagu storm: no lab in {run_dir} (tsunagu lab up, deploy first)", file=sys.stderr)
        return 1
    estate_file = args.estate or json.loads(lab_state.read_text())["estate"]
    estate = load_or_exit(estate_file)
    try:
        load_scenario(args.scenario)
        runner._load_sla(args.sla)
    except EstateInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    output = Path(args.output or run_dir / "storm" / args.scenario.replace("/", "_")).resolve()
    print(f"estate {estate.municipality.name}: {len(estate.staff)} staff, {len(estate.hunt_groups)} hunt groups")
    return runner.storm(run_dir, estate_file, args.scenario, output, sla_file=args.sla,
                        locust_workers=args.locust_workers, web=args.web, behaviour=args.behaviour)


def add_command(sub) -> None:
    from .storm.scenario import builtin_names

    p = sub.add_parser("storm", help="a call storm on a deployed lab, against the SLA",
                       description="Drive a scenario's calls and registration storms through the lab's "
                       "handset farm with Locust, measure them (RFC 6076, hunt groups, Erlang C), hold them "
                       "against the SLA, and write JUnit XML and an HTML report. Exit 1 on any breach.")
    p.add_argument("estate", nargs="?", help="estate YAML (default: the one the lab was built from)")
    p.add_argument("--run-dir", help="the lab's run dir (default: runs/<city>/)")
    p.add_argument("--scenario", default="morning-peak",
                   help=f"built-in ({', '.join(builtin_names())}) or a scenario YAML file")
    p.add_argument("--sla", help="SLA file (default: loadtests/sla.yaml)")
    p.add_argument("--output", help="folder for the storm's files (default: <run dir>/storm/<scenario>)")
    p.add_argument("--locust-workers", type=int, default=0, help="run Locust as a master with N workers")
    p.add_argument("--behaviour", choices=("answer", "profiles"), default="answer",
                   help="answer: every free handset answers (the SLA's view); profiles: people as in life")
    p.add_argument("--web", action="store_true", help="Locust's web UI on 127.0.0.1:8089 instead of headless")
    p.set_defaults(func=_storm)
