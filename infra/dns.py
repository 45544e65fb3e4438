"""DNS: a Route 53 private zone for the SIP domain, with the lab's names.

Handsets find the PBX nodes by the SRV records of the SIP domain (RFC 3263) and fail
over between them in priority order. The records are exactly `Plan.srv_records()`,
the list the lab's DNS server publishes, and each SRV target is an A record of the
PBX host. The city's own DNS servers forward the SIP domain to a Route 53 inbound
resolver in each region where the placement puts DNS, at fixed addresses.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .network import RegionNetwork
from .security import SecurityGroups, group_name
from .settings import Settings
from .topology import RESOLVER_OFFSET, Layout, subnet_cidr

TTL = 60  # short, so a replaced host is found again within a minute
RESOLVER_ADDRESSES = 2  # Route 53 requires at least two per endpoint


def resolver_addresses(layout: Layout, settings: Settings, region: str) -> list[tuple[str, str]]:
    """(zone, address) of a region's inbound resolver: the DNS sites' zones, then other zones."""
    own = layout.resolver_zones(region)
    if not own:
        return []
    others = [z for z in layout.zones[region] if z not in own]
    zones = own + others[: max(0, RESOLVER_ADDRESSES - len(own))]
    zones += zones[:1] * (RESOLVER_ADDRESSES - len(zones))  # a region with one zone: two addresses in it
    return [(zone, str(subnet_cidr(settings, region, zone).network_address + RESOLVER_OFFSET + zones[:k].count(zone)))
            for k, zone in enumerate(zones)]


def srv_record_sets(layout: Layout) -> dict[str, list[str]]:
    """Route 53 SRV record sets: name -> 'priority weight port target' values."""
    sets: dict[str, list[str]] = {}
    for name, priority, weight, port, target in layout.plan.srv_records():
        sets.setdefault(name.rstrip("."), []).append(f"{priority} {weight} {port} {target}")
    return sets


class ServiceDiscovery(pulumi.ComponentResource):
    def __init__(self, layout: Layout, settings: Settings, networks: dict[str, RegionNetwork],
                 groups: dict[str, SecurityGroups], providers: dict[str, aws.Provider],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("tsunagu:infra:ServiceDiscovery", "service-discovery", None, opts)
        domain = layout.plan.domain
        primary = pulumi.ResourceOptions(parent=self, provider=providers[layout.regions[0]])
        self.zone = aws.route53.Zone(
            domain, name=domain, comment="Tsunagu SIP domain (private)",
            vpcs=[{"vpc_id": networks[r].vpc.id, "vpc_region": r} for r in layout.regions], opts=primary)
        for host in layout.hosts:
            aws.route53.Record(host.name, zone_id=self.zone.zone_id, name=f"{host.name}.{domain}", type="A",
                               ttl=TTL, records=[host.address], opts=primary)
        self.srv_names = []
        for name, values in srv_record_sets(layout).items():
            aws.route53.Record(name, zone_id=self.zone.zone_id, name=name, type="SRV", ttl=TTL,
                               records=values, opts=primary)
            self.srv_names.append(name)
        self.resolvers: dict[str, list[str]] = {}
        for region in layout.regions:
            addresses = resolver_addresses(layout, settings, region)
            if not addresses:
                continue
            network = networks[region]
            aws.route53.ResolverEndpoint(
                f"{region}-inbound", direction="INBOUND", name=f"tsunagu-{region}-inbound",
                security_group_ids=groups[region].ids(group_name(region, "dns")),
                ip_addresses=[{"subnet_id": network.private_subnets[zone].id, "ip": ip} for zone, ip in addresses],
                opts=pulumi.ResourceOptions(parent=self, provider=providers[region]))
            self.resolvers[region] = [ip for _, ip in addresses]
        self.register_outputs({"zone_id": self.zone.zone_id})
