"""The Ansible inventory: one format, whether the hosts are lab namespaces or cloud servers.

The lab builds it from the plan (`from_plan`); production builds it from the Pulumi
stack outputs (`infra/` exports `inventory_hosts` and `trunk_links` in exactly the
shape `render` takes). Playbooks only ever see what `render` returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .model import Service
from .plan import CARRIER_HOST, Plan

# 'consensus' holds the etcd members and Redis Sentinels (see Plan.consensus). 'managed'
# holds the data stores a cloud provider runs (host var `tsunagu_managed`, e.g. RDS):
# plays that install software exclude it; the lab has none.
MANAGED = "managed"
GROUPS = [s.value for s in Service] + ["consensus", CARRIER_HOST, MANAGED]


@dataclass(frozen=True)
class InventoryHost:
    name: str
    address: str  # where its services listen and where Ansible reaches it
    groups: tuple[str, ...]  # service names, or 'carrier'
    site: str | None = None
    connection: dict = field(default_factory=dict)  # ansible_connection and its settings


@dataclass(frozen=True)
class InventoryTrunk:
    id: str
    carrier: str
    role: str
    site: str
    carrier_address: str  # the carrier's signalling address
    site_address: str  # the PBX side of the interconnect


def render(hosts: list[InventoryHost], trunks: list[InventoryTrunk], *, domain: str,
           environment: str, estate_file: str, service_manager: str) -> dict:
    """The inventory as a dict ready for YAML. Group members are listed in placement order,
    so the first host of a group is its preferred primary."""
    order = {name: i for i, name in enumerate(h.name for h in hosts)}
    return {
        "all": {
            "vars": {
                "tsunagu_environment": environment,
                "tsunagu_estate_file": estate_file,
                "tsunagu_sip_domain": domain,
                "tsunagu_service_manager": service_manager,
                "tsunagu_trunks": [asdict(t) for t in trunks],
            },
            "hosts": {
                h.name: {
                    "ansible_host": h.address,
                    "tsunagu_address": h.address,
                    "tsunagu_site": h.site,
                    "tsunagu_root": "",  # production hosts keep files in their usual places
                    **h.connection,
                }
                for h in sorted(hosts, key=lambda h: order[h.name])
            },
            "children": {
                group: {"hosts": {h.name: None for h in hosts if group in _groups(h)}}
                for group in GROUPS
            },
        }
    }


def _groups(host: InventoryHost) -> tuple[str, ...]:
    return host.groups + ((MANAGED,) if host.connection.get("tsunagu_managed") else ())


def from_plan(plan: Plan, estate_file: str, run_dir: str, prefix: str = "tsu-") -> dict:
    """The lab's inventory: each namespace is a host, entered by the netns connection plugin."""
    voters = {h.name for h in plan.consensus()}
    hosts = [
        InventoryHost(
            name=h.name,
            address=str(h.address),
            groups=tuple(s.value for s in h.services) + (("consensus",) if h.name in voters else ())
            + ((CARRIER_HOST,) if h.name == CARRIER_HOST else ()),
            site=h.site,
            connection={
                "ansible_connection": "tsunagu_netns",
                "tsunagu_netns": f"{prefix}{h.name}",
                "tsunagu_run_dir": run_dir,
                # Lab hosts share one filesystem, so each keeps its files under its own root.
                "tsunagu_root": f"{run_dir}/hosts/{h.name}",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        )
        for h in plan.hosts
    ]
    trunks = [
        InventoryTrunk(t.trunk, t.carrier, t.role, t.site, str(t.carrier_address), str(t.site_address))
        for t in plan.trunk_links
    ]
    return render(hosts, trunks, domain=plan.domain, environment="lab",
                  estate_file=str(Path(estate_file).resolve()), service_manager="supervisor")


def dump(inventory: dict) -> str:
    return yaml.safe_dump(inventory, sort_keys=False, allow_unicode=True)
