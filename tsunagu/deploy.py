"""`tsunagu deploy`: configure every host of an inventory with the Ansible playbooks.

The inventory is the lab's (written by `lab up` into the run dir) or production's
(rendered from the Pulumi stack outputs); the playbooks cannot tell them apart except
through its variables. Secrets are generated on first use and passed by file name only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .secrets import ensure_secrets, secrets_file

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "ansible"
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass(frozen=True)
class Recap:
    hosts: dict[str, dict[str, int]]

    @property
    def changed(self) -> int:
        return sum(h["changed"] for h in self.hosts.values())

    @property
    def failed(self) -> int:
        return sum(h["failed"] + h["unreachable"] for h in self.hosts.values())


def parse_recap(output: str) -> Recap:
    hosts = {}
    for line in output.splitlines():
        if m := _RECAP.match(line.strip()):
            hosts[m[1]] = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:])))
    return Recap(hosts)


def inventory_estate(inventory: Path) -> str:
    return yaml.safe_load(inventory.read_text())["all"]["vars"]["tsunagu_estate_file"]


def estate_facts(estate) -> dict:
    """Facts about the estate the playbooks need beyond the inventory's hosts, all derived."""
    from .plan import plan

    return {
        "tsunagu_srv_records": [list(r) for r in plan(estate).srv_records()],
        "tsunagu_outside_line_prefix": estate.numbering.outside_line_prefix,
        "tsunagu_extension_length": estate.numbering.extension_length,
    }


def _closed_to_services(inventory: Path) -> Path | None:
    """The first folder on the way to a lab's run dir that other users cannot enter."""
    hosts = yaml.safe_load(inventory.read_text())["all"]["hosts"].values()
    if not any(h.get("tsunagu_netns") for h in hosts):
        return None  # production hosts keep their files on their own disks
    run_dir = inventory.parent.resolve()
    return next((p for p in [run_dir, *run_dir.parents] if not p.stat().st_mode & 0o001), None)


def run_playbook(inventory: Path, estate, *, playbook: str = "site.yml", extra: list[str] = (),
                 log: Path, brief: bool = False) -> tuple[int, Recap]:
    """Run a playbook, copying its output to `log`; returns (rc, recap). Streams every line,
    or with `brief` only the plays and the recap, as progress for a long rehearsal."""
    if closed := _closed_to_services(inventory):
        raise SystemExit(f"tsunagu deploy: {closed} is closed to other users (mode "
                         f"{oct(closed.stat().st_mode & 0o777)}), but the lab's services run as their own "
                         f"users and read their files under {inventory.parent}; choose a run dir they can reach")
    secrets = secrets_file(estate)
    ensure_secrets(estate)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    facts = inventory.parent / "estate-facts.json"
    facts.write_text(json.dumps(estate_facts(estate), indent=1))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), playbook,
           "-e", f"tsunagu_secrets_file={secrets}",
           "-e", f"@{facts}", *extra]
    lines = []
    with (subprocess.Popen(cmd, cwd=ANSIBLE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, bufsize=1) as proc, open(log, "w") as out):
        for line in proc.stdout:
            lines.append(line)
            out.write(line)
            if not brief or line.startswith(("PLAY [", "fatal:", "failed:")) or _RECAP.match(line.strip()):
                sys.stdout.write(line)
                sys.stdout.flush()
    return proc.returncode, parse_recap("".join(lines))


def _deploy(args) -> int:
    from .cli import DEFAULT_ESTATE, load_or_exit
    from .lab import default_run_dir

    if args.inventory:
        inventory = Path(args.inventory)
        estate = load_or_exit(args.estate or inventory_estate(inventory))
    else:
        estate = load_or_exit(args.estate or str(DEFAULT_ESTATE))
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(estate.municipality.sip_domain)
        inventory = run_dir / "inventory.yml"
        if not inventory.exists():
            print(f"tsunagu deploy: no inventory at {inventory}; run `tsunagu lab up` first, "
                  "or pass --inventory", file=sys.stderr)
            return 1
    log = inventory.parent / "deploy.log"
    rc, recap = run_playbook(inventory, estate, extra=args.ansible_args, log=log)
    print(f"deploy: {len(recap.hosts)} hosts, changed={recap.changed}, failed={recap.failed} (log: {log})")
    return rc


def add_command(sub) -> None:
    p = sub.add_parser("deploy", help="configure the estate's hosts with Ansible (lab or production)",
                       description="Run ansible/site.yml against the lab's inventory (from `lab up`) or a "
                       "production inventory (from `tsunagu inventory --from-stack-outputs`). "
                       "Safe to run again: a second run reports changed=0.")
    p.add_argument("estate", nargs="?", help="estate YAML file (default: the inventory's, else the small example)")
    p.add_argument("--run-dir", help="the lab's run dir (default: runs/<first label of sip_domain>/)")
    p.add_argument("--inventory", help="an inventory file instead of the lab's")
    p.add_argument("--ansible-arg", dest="ansible_args", action="append", default=[], metavar="ARG",
                   help="pass ARG to ansible-playbook (repeatable), e.g. --ansible-arg=--limit=pbx")
    p.set_defaults(func=_deploy)
