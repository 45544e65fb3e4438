"""`tsunagu inventory --from-stack-outputs FILE`: the production inventory from Pulumi's outputs.

The Pulumi program (`infra/`) exports `inventory_hosts` and `trunk_links` in the shape
of `inventory.InventoryHost` and `inventory.InventoryTrunk`; this module turns the
JSON of `pulumi stack output --json` into the same inventory the lab renders, so
playbooks cannot tell a cloud server from a lab namespace except by its address and
connection. The program renders its `ansible_inventory` output with this function too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .inventory import InventoryHost, InventoryTrunk, dump, render

ROOT = Path(__file__).resolve().parent.parent  # where Pulumi.yaml names estate files from
SERVICE_MANAGER = "systemd"


def from_stack_outputs(outputs: dict, root: Path = ROOT) -> dict:
    hosts = [InventoryHost(name=h["name"], address=h["address"], groups=tuple(h["groups"]),
                           site=h.get("site"), connection=dict(h.get("connection") or {}))
             for h in outputs["inventory_hosts"]]
    trunks = [InventoryTrunk(**t) for t in outputs["trunk_links"]]
    return render(hosts, trunks, domain=outputs["sip_domain"], environment=outputs["environment"],
                  estate_file=str((root / outputs["estate_file"]).resolve()), service_manager=SERVICE_MANAGER)


def _inventory(args) -> int:
    try:
        outputs = json.loads(Path(args.from_stack_outputs).read_text(encoding="utf-8"))
        inventory = from_stack_outputs(outputs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{args.from_stack_outputs}: not the output of `pulumi stack output --json` for a Tsunagu "
              f"stack ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    text = dump(inventory)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("inventory", help="the Ansible inventory of a deployed stack",
                       description="Render the Ansible inventory of a cloud deployment, in the lab's format, "
                       "from `pulumi stack output --json > FILE`.")
    p.add_argument("--from-stack-outputs", required=True, metavar="FILE",
                   help="JSON written by `pulumi stack output --json`")
    p.add_argument("-o", "--output", metavar="FILE", help="write the YAML here instead of printing it")
    p.set_defaults(func=_inventory)
