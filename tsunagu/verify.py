"""`tsunagu verify`: run the testinfra checks in tests/verify against every inventory host.

Lab hosts are checked from inside their namespace (`--hosts=local://`), production hosts
over SSH; each host runs the checks of its groups only. JUnit XML per host goes to
`<inventory dir>/verify/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CHECKS = REPO / "tests" / "verify"


@dataclass(frozen=True)
class HostResult:
    host: str
    rc: int
    tests: int
    failures: int

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.tests > 0


def host_command(name: str, hostvars: dict, groups: list[str], junit: Path) -> list[str]:
    markers = ["every_host", *groups] + (["lab_host"] if hostvars.get("tsunagu_netns") else [])
    pytest_args = [sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:cacheprovider",
                   "-o", "addopts=", "--confcutdir", str(CHECKS), "--rootdir", str(CHECKS),
                   "-m", " or ".join(markers), f"--junitxml={junit}"]
    if hostvars.get("tsunagu_netns"):
        return ["ip", "netns", "exec", hostvars["tsunagu_netns"], *pytest_args, "--hosts=local://"]
    return [*pytest_args, f"--hosts=ssh://{hostvars['ansible_host']}"]


def verify(inventory_file: Path, only: list[str] | None = None) -> list[HostResult]:
    from .estate import load_estate
    from .secrets import secrets_file

    inventory = yaml.safe_load(inventory_file.read_text())["all"]
    secrets = secrets_file(load_estate(inventory["vars"]["tsunagu_estate_file"]))
    out_dir = inventory_file.parent / "verify"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, hostvars in inventory["hosts"].items():
        if only and name not in only or hostvars.get("tsunagu_managed"):
            continue
        groups = [g for g, d in inventory["children"].items() if name in ((d or {}).get("hosts") or {})]
        junit = out_dir / f"{name}.xml"
        print(f"verify {name} ({', '.join(groups) or 'site'}) ...", flush=True)
        env = dict(os.environ, TSUNAGU_INVENTORY=str(inventory_file.resolve()), TSUNAGU_HOST=name,
                   TSUNAGU_SECRETS=str(secrets))
        proc = subprocess.run(host_command(name, hostvars, groups, junit), env=env, cwd=REPO,
                              capture_output=True, text=True, check=False)
        tests, failures = _junit_counts(junit)
        results.append(HostResult(name, proc.returncode, tests, failures))
        if proc.returncode != 0:
            sys.stdout.write(proc.stdout[-6000:] + proc.stderr[-2000:])
    return results


def _junit_counts(junit: Path) -> tuple[int, int]:
    try:
        suite = ET.parse(junit).getroot()
    except (FileNotFoundError, ET.ParseError):
        return 0, 0
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))


def _verify(args) -> int:
    from .cli import DEFAULT_ESTATE, load_or_exit
    from .lab import default_run_dir

    if args.inventory:
        inventory = Path(args.inventory)
    else:
        estate = load_or_exit(args.estate or str(DEFAULT_ESTATE))
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(estate.municipality.sip_domain)
        inventory = run_dir / "inventory.yml"
    if not inventory.exists():
        print(f"tsunagu verify: no inventory at {inventory}; run `tsunagu lab up` and `deploy` first",
              file=sys.stderr)
        return 1
    results = verify(inventory, args.host)
    for r in results:
        print(f"  {r.host:<20} {'PASS' if r.ok else 'FAIL'}  {r.tests - r.failures}/{r.tests} checks")
    passed = sum(r.tests - r.failures for r in results)
    total = sum(r.tests for r in results)
    print(f"verify: {passed} passed, {total - passed} failed on {len(results)} hosts "
          f"(JUnit: {inventory.parent / 'verify'})")
    return 0 if results and all(r.ok for r in results) else 1


def add_command(sub) -> None:
    p = sub.add_parser("verify", help="check the deployed hosts with pytest-testinfra",
                       description="Run tests/verify against every host of the lab (inside its namespace) "
                       "or of a production inventory (over SSH), each host with the checks of its groups.")
    p.add_argument("estate", nargs="?", help="estate YAML file (default: the small example)")
    p.add_argument("--run-dir", help="the lab's run dir (default: runs/<first label of sip_domain>/)")
    p.add_argument("--inventory", help="an inventory file instead of the lab's")
    p.add_argument("--host", action="append", help="verify only this host (repeatable)")
    p.set_defaults(func=_verify)
