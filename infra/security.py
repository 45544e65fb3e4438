"""Security groups as tight as the design allows, one set per region.

SIP and RTP come only from the city's site networks, the other PBX nodes and (on
the carrier-facing interfaces) the carrier's SBC ranges; Redis and PostgreSQL only
from PBX hosts; SSH only from the admin ranges. Rules are built as plain data
first (`region_rules`), checked by `policy.check`, then declared.

Security groups cannot be referenced across an inter-region peering, so peers in
the other region are allowed by their fixed /32 addresses instead.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from tsunagu.model import Service

from . import policy
from .policy import Rule
from .settings import Settings
from .topology import CONSENSUS, MANAGED, Layout

SIP = [("udp", 5060, 5060), ("tcp", 5060, 5060), ("tcp", 5061, 5061)]  # 5061: SIP over TLS
RTPENGINE_CONTROL = ("udp", 2223, 2223)  # rtpengine's ng protocol, driven by Kamailio
REDIS = [("tcp", 6379, 6379), ("tcp", 26379, 26379)]  # server and sentinel
POSTGRESQL = [("tcp", 5432, 5432)]
ETCD = [("tcp", 2379, 2380)]  # client and peer
SENTINEL = [("tcp", 26379, 26379)]
SSH = ("tcp", 22, 22)
DNS = [("udp", 53, 53), ("tcp", 53, 53)]
HOST = "host"  # the group every instance carries: management in, estate networks out


def group_name(region: str, role: str) -> str:
    return f"{region}-{role}"


def carrier_group(trunk: str) -> str:
    return f"carrier-{trunk}"


def roles_in(layout: Layout, region: str) -> list[str]:
    present = {s for h in layout.in_region(region) for s in h.services}
    present |= {s for s in MANAGED if region in layout.managed.get(s, {})}
    if layout.resolver_zones(region):
        present.add(Service.DNS)
    voters = [CONSENSUS] if any(h.consensus for h in layout.in_region(region)) else []
    return [HOST] + [s.value for s in Service if s in present] + voters


def region_rules(layout: Layout, settings: Settings, region: str) -> list[Rule]:
    roles = roles_in(layout, region)
    # The same addresses in fewer blocks: a city's site ranges are usually adjacent, and
    # every block is a rule counted against the security group's quota.
    sites = collapsed(s.lan_cidr for s in layout.on_prem)
    own_networks = collapsed([settings.regions[r].cidr for r in layout.regions] + sites)
    rules: list[Rule] = []

    def allow(role: str, ports, *, cidrs=(), groups=(), why: str) -> None:
        if role not in roles:
            return
        group = group_name(region, role)
        for protocol, first, last in ports:
            rules.extend(Rule(group, "ingress", protocol, first, last, cidr=c, description=why) for c in cidrs)
            rules.extend(Rule(group, "ingress", protocol, first, last, peer_group=group_name(region, g),
                              description=why) for g in groups if g in roles)

    def remote(service: Service | None) -> list[str]:
        """Peers in other regions, by address; None stands for the consensus voters."""
        return [f"{h.address}/32" for h in layout.hosts if h.region != region
                and (h.consensus if service is None else h.runs(service))]

    remote_pbx = remote(Service.PBX)
    rtp = [("udp", settings.rtp_ports.first, settings.rtp_ports.last)]
    allow(HOST, [SSH], cidrs=settings.admin_ranges, why="management from the admin range")
    allow("dns", DNS, cidrs=sites, why="the city's DNS forwarders asking for the SIP domain")
    allow("pbx", SIP, cidrs=sites, why="SIP from handsets at the city's sites")
    allow("pbx", SIP, groups=["pbx"], cidrs=remote_pbx, why="SIP between PBX nodes")
    allow("rtpengine", rtp, cidrs=sites, why="RTP from handsets at the city's sites")
    allow("rtpengine", [RTPENGINE_CONTROL], groups=["pbx"], cidrs=remote_pbx, why="rtpengine control from PBX")
    allow("redis", REDIS, groups=["pbx"], cidrs=remote_pbx, why="Redis from PBX nodes")
    allow("redis", REDIS, groups=["redis"], cidrs=remote(Service.REDIS), why="Redis replication")
    allow("postgresql", POSTGRESQL, groups=["pbx"], cidrs=remote_pbx, why="PostgreSQL from PBX nodes")
    allow("postgresql", POSTGRESQL, groups=["postgresql"], cidrs=remote(Service.POSTGRESQL),
          why="PostgreSQL replication")
    allow(CONSENSUS, ETCD + SENTINEL, groups=[CONSENSUS], cidrs=remote(None), why="etcd and Sentinel voters")
    allow(CONSENSUS, SENTINEL, groups=["pbx"], cidrs=remote_pbx, why="Sentinel asked by PBX nodes")
    for role in roles:
        for cidr in own_networks + (settings.egress_ranges if role == HOST else []):
            rules.append(Rule(group_name(region, role), "egress", "-1", 0, 65535, cidr=cidr,
                              description="to the estate's own networks"))

    for trunk, host in layout.trunk_hosts.items():
        if host.region != region:
            continue
        group = carrier_group(trunk)
        for cidr in carrier_ranges(settings, trunk):
            for protocol, first, last in SIP + rtp:
                rules.append(Rule(group, "ingress", protocol, first, last, cidr=cidr,
                                  description=f"SIP and RTP from the {trunk} carrier SBC"))
            rules.append(Rule(group, "egress", "-1", 0, 65535, cidr=cidr, description=f"to the {trunk} SBC"))
    # Two sites may share a range, or a range may serve two purposes: one rule is enough.
    return list({rule.name: rule for rule in rules}.values())


def collapsed(cidrs) -> list[str]:
    return [str(n) for n in ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in cidrs)]


def carrier_ranges(settings: Settings, trunk: str) -> list[str]:
    carrier = settings.carriers[trunk]
    return carrier.sbc_ranges or [f"{carrier.signalling}/32"]


class SecurityGroups(pulumi.ComponentResource):
    """The security groups of one region, by logical name (`group_name`, `carrier_group`)."""

    def __init__(self, name: str, region: str, layout: Layout, settings: Settings, vpc_id,
                 opts: pulumi.ResourceOptions):
        super().__init__("tsunagu:infra:SecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rules = region_rules(layout, settings, region)
        policy.check(rules, settings.open_to_internet)
        self.groups: dict[str, aws.ec2.SecurityGroup] = {}
        for group in dict.fromkeys(r.group for r in rules) | {group_name(region, r): None
                                                              for r in roles_in(layout, region)}:
            self.groups[group] = aws.ec2.SecurityGroup(
                group, vpc_id=vpc_id, description=f"Tsunagu {group}",
                revoke_rules_on_delete=True, tags={"Name": group}, opts=child)
        for rule in rules:
            kind = aws.vpc.SecurityGroupIngressRule if rule.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
            ports = {} if rule.protocol == "-1" else {"from_port": rule.from_port, "to_port": rule.to_port}
            kind(rule.name, security_group_id=self.groups[rule.group].id, ip_protocol=rule.protocol,
                 cidr_ipv4=rule.cidr,
                 referenced_security_group_id=self.groups[rule.peer_group].id if rule.peer_group else None,
                 description=rule.description, opts=child, **ports)
        self.register_outputs({})

    def ids(self, *names: str) -> list[pulumi.Output[str]]:
        return [self.groups[n].id for n in names if n in self.groups]
