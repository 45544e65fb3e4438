"""The Pulumi program: the estate named in the stack config, built on AWS.

`build` declares every resource and returns the stack outputs; `__main__.py` exports
them. Tests call `build` under `pulumi.runtime.set_mocks` (see `infra/mocked.py`).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pulumi
import pulumi_aws as aws

from tsunagu.estate import load_estate
from tsunagu.inventory import GROUPS, MANAGED, dump
from tsunagu.plan import plan
from tsunagu.stack_inventory import from_stack_outputs

from . import network
from .carrier import CarrierInterconnect
from .datastores import PASSWORD_KEYS, DataStores, Passwords
from .dns import ServiceDiscovery
from .hosts import SiteHost, debian_ami
from .recordings import RecordingStore
from .security import SecurityGroups
from .settings import Settings, SettingsInvalid, from_config
from .topology import layout as cloud_layout

ROOT = Path(__file__).resolve().parent.parent  # Pulumi.yaml's folder: estate paths are relative to it
ADMIN_USER = "admin"  # the login of Debian's cloud images


def read_settings() -> Settings:
    config = pulumi.Config("tsunagu")

    def read(key: str):
        text = config.get(key)
        if text is None:
            return None
        try:
            return json.loads(text)  # structured values and booleans arrive as JSON
        except ValueError:
            return text

    return from_config(read)


def read_passwords() -> Passwords:
    """The estate's data-store passwords, which managed data stores must share with Ansible."""
    config = pulumi.Config("tsunagu")
    values = {key: config.get_secret(key) for key in PASSWORD_KEYS}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise SettingsInvalid(
            "stack configuration is invalid:\n  " + "\n  ".join(
                f"tsunagu:{key}: managed data stores need the estate's services.{PASSWORD_KEYS[key]} "
                f"(`pulumi config set --secret tsunagu:{key}`, see docs/infra.md)" for key in missing))
    return Passwords(**{PASSWORD_KEYS[key]: value for key, value in values.items()})


def build(settings: Settings) -> dict:
    estate = load_estate(ROOT / settings.estate)
    layout = cloud_layout(estate, plan(estate), settings)
    passwords = read_passwords() if settings.managed_data_stores else None
    providers = {r: aws.Provider(f"aws-{r}", region=r,
                                 default_tags={"tags": {"tsunagu-stack": pulumi.get_stack(),
                                                        "tsunagu-city": estate.municipality.sip_domain}})
                 for r in layout.regions}

    def in_region(region: str) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(providers=[providers[region]])

    networks = {r: network.RegionNetwork(r, layout, settings, in_region(r)) for r in layout.regions}
    for a, b in combinations(layout.regions, 2):
        network.peer(networks[a], networks[b], providers, networks[a])
    groups = {r: SecurityGroups(f"{r}-security", r, layout, settings, networks[r].vpc.id, in_region(r))
              for r in layout.regions}
    amis = {r: debian_ami(settings, providers[r]) for r in layout.regions}
    hosts = {h.name: SiteHost(h, networks[h.region], groups[h.region], amis[h.region], settings,
                              in_region(h.region)) for h in layout.hosts}

    interconnects = {}
    for trunk in estate.trunks:
        host = layout.trunk_hosts[trunk.id]
        # Interface 0 is the private one; each trunk landing on the host adds the next.
        index = 1 + [t for t, h in layout.trunk_hosts.items() if h.name == host.name].index(trunk.id)
        interconnects[trunk.id] = CarrierInterconnect(trunk.id, index, hosts[host.name], networks[host.region],
                                                      groups[host.region], in_region(host.region))

    stores = DataStores(layout, settings, passwords, networks, groups, providers) if passwords else None
    discovery = ServiceDiscovery(layout, settings, networks, groups, providers)
    recordings = RecordingStore(estate, in_region(layout.regions[0]))

    inventory_hosts = [
        {"name": h.name, "address": h.address, "groups": h.groups, "site": h.site,
         # The image's admin user logs in; packages and services need root.
         "connection": {"ansible_user": ADMIN_USER, "ansible_become": True}}
        for h in layout.hosts
    ] + [
        # The inventory puts hosts marked tsunagu_managed in the group `managed` as well, which
        # the playbooks exclude; the PBX reads their address like any other data store's.
        {"name": e.name, "address": e.address, "groups": [e.service.value], "site": e.site,
         "connection": {"tsunagu_managed": e.kind}}
        for e in (stores.endpoints if stores else [])
    ]
    trunk_links = [
        {"id": t.id, "carrier": t.carrier, "role": t.role, "site": t.site,
         "carrier_address": settings.carriers[t.id].signalling,
         "site_address": interconnects[t.id].address.public_ip}
        for t in estate.trunks
    ]
    outputs = {
        "environment": pulumi.get_stack(),
        "estate_file": settings.estate,
        "sip_domain": estate.municipality.sip_domain,
        "regions": {r: layout.zones[r] for r in layout.regions},
        # As the rendered inventory groups them: the managed data stores also form `managed`.
        "hosts_by_role": {g: [h["name"] for h in inventory_hosts
                              if g in h["groups"] or g == MANAGED and "tsunagu_managed" in h["connection"]]
                          for g in GROUPS},
        "addresses": {h.name: h.address for h in layout.hosts},
        "srv_records": discovery.srv_names,
        "dns_resolvers": discovery.resolvers,
        "carrier_addresses": {t: i.address.public_ip for t, i in interconnects.items()},
        "vpn_tunnels": {f"{site}@{r}": tunnels for r, n in networks.items() for site, tunnels in n.vpn_tunnels.items()},
        "data_stores": {e.name: e.address for e in (stores.endpoints if stores else [])},
        "recordings_bucket": recordings.bucket.bucket,
        "recording_retention_days": recordings.prefixes,
        "inventory_hosts": inventory_hosts,
        "trunk_links": trunk_links,
    }
    outputs["ansible_inventory"] = pulumi.Output.from_input(outputs).apply(
        lambda resolved: dump(from_stack_outputs(resolved, ROOT)))
    return outputs


def main() -> None:
    for name, value in build(read_settings()).items():
        pulumi.export(name, value)
