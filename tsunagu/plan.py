"""The topology an estate implies: hosts, their services, addresses and handsets.

The lab turns this into namespaces; Pulumi turns the same placement into cloud
hosts; both hand Ansible the inventory rendered by `inventory.py`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from .model import Estate, Service

CARRIER_HOST = "carrier"
WAN_SUBNET_INDEX = 0  # the /24 of the pool that carries the simulated WAN


@dataclass(frozen=True)
class TrunkLink:
    """A point-to-point link between the carrier and the site a trunk lands on."""

    trunk: str
    carrier: str
    role: str
    site: str
    subnet: ipaddress.IPv4Network
    carrier_address: ipaddress.IPv4Address
    site_address: ipaddress.IPv4Address


@dataclass(frozen=True)
class Host:
    name: str
    site: str | None
    kind: str
    address: ipaddress.IPv4Address  # on the WAN; what services listen on
    services: tuple[Service, ...]
    handsets: int
    wan: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    domain: str
    pool: ipaddress.IPv4Network
    wan_subnet: ipaddress.IPv4Network
    hosts: tuple[Host, ...]
    trunk_links: tuple[TrunkLink, ...]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def running(self, service: Service) -> list[Host]:
        return [h for h in self.hosts if service in h.services]

    def consensus(self) -> list[Host]:
        """Three voters for etcd and Redis Sentinel: the PostgreSQL sites plus a witness.

        Two data sites cannot outvote each other when the link between them breaks,
        so a third site (a PBX or DNS site first, else the site with the most staff)
        holds the deciding vote."""
        voters = self.running(Service.POSTGRESQL)
        others = [h for h in self.hosts if h not in voters and h.name != CARRIER_HOST]
        others.sort(key=lambda h: (not h.services, -h.handsets))
        return (voters + others)[: max(3, len(voters) | 1)]

    def srv_records(self) -> list[tuple[str, int, int, int, str]]:
        """(name, priority, weight, port, target): RFC 3263 lookup of the SIP domain."""
        out = []
        for priority, host in enumerate(self.running(Service.PBX), start=1):
            target = f"{host.name}.{self.domain}."
            out.append((f"_sip._udp.{self.domain}.", priority * 10, 100, 5060, target))
            out.append((f"_sip._tcp.{self.domain}.", priority * 10, 100, 5060, target))
        return out


def plan(estate: Estate) -> Plan:
    pool = ipaddress.ip_network(estate.lab.address_pool)
    if pool.prefixlen > 22:
        raise ValueError(f"lab.address_pool {pool} is too small: give the lab at least a /22")
    subnets = pool.subnets(new_prefix=24)
    wan = next(subnets)
    # .1 is left for the WAN bridge's own use; sites follow, the carrier last.
    wan_hosts = iter(list(wan.hosts())[9:])
    handsets = Counter(estate.site_of(p) for p in estate.staff)
    hosts = []
    for site in estate.sites:
        services = tuple(s for s in Service if site.id in estate.placement.sites_for(s))
        hosts.append(Host(site.id, site.id, site.kind.value, next(wan_hosts), services,
                          handsets.get(site.id, 0), site.wan.model_dump()))
    hosts.append(Host(CARRIER_HOST, None, "carrier", next(wan_hosts), (), 0,
                      {"latency_ms": 2.0, "jitter_ms": 0.0, "loss_pct": 0.0, "bandwidth_mbit": 1000.0}))
    links = []
    for trunk in estate.trunks:
        subnet = next(next(subnets).subnets(new_prefix=30))
        carrier_side, site_side = subnet.hosts()
        links.append(TrunkLink(trunk.id, trunk.carrier, trunk.role, trunk.site, subnet,
                               carrier_side, site_side))
    return Plan(estate.municipality.sip_domain, pool, wan, tuple(hosts), tuple(links))
