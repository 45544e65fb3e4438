"""Where the estate lands on the cloud: each planned host gets a region and zone.

Pure functions of the estate, its plan and the stack settings, so every decision
about placement is testable without Pulumi. The hosts are exactly the plan's hosts
(`tsunagu.plan`), named as in the lab, so SRV targets and inventory names agree.

A site is in the cloud when the estate gives it a `cloud_zone`, or when the stack
maps it to a zone (`tsunagu:siteZones`): that is how a city moves the services of
its own datacenter to an availability zone without rewriting the estate. Every
other site is on the city's premises and reaches the cloud through a VPN. A service
placed on an on-premises site is an error: Pulumi cannot build a host there, and
silently skipping it would deploy a PBX with less redundancy than the estate says.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, replace

from tsunagu.model import Estate, Service
from tsunagu.plan import CARRIER_HOST, Host, Plan

from .settings import Settings

# With managed data stores these services run on ElastiCache and RDS, not on hosts.
MANAGED = (Service.REDIS, Service.POSTGRESQL)
# The cloud's DNS is Route 53; hosts do not run a DNS server there.
CLOUD_PROVIDED = (Service.DNS,)
CONSENSUS = "consensus"
WITNESS = "witness"
FIRST_HOST_OFFSET = 10  # host addresses in a subnet start at .10, clear of AWS's reserved five
RESOLVER_OFFSET = 5  # Route 53 inbound resolver addresses: .5 and up, below the hosts


class PlacementError(ValueError):
    pass


@dataclass(frozen=True)
class CloudHost:
    name: str
    site: str | None  # None for a consensus witness, which stands for no site
    region: str
    zone: str
    services: tuple[Service, ...]  # what runs on the instance itself
    address: str  # fixed private address, so DNS and peer rules are known before creation
    consensus: bool = False  # an etcd member and Redis Sentinel (Plan.consensus)

    @property
    def groups(self) -> list[str]:
        """Its inventory groups, as the lab names them."""
        return [s.value for s in self.services] + ([CONSENSUS] if self.consensus else [])

    def runs(self, service: Service) -> bool:
        return service in self.services


@dataclass(frozen=True)
class OnPremSite:
    id: str
    lan_cidr: str
    gateway_ip: str


@dataclass(frozen=True)
class Layout:
    plan: Plan
    regions: tuple[str, ...]  # primary first
    zones: dict[str, tuple[str, ...]]  # region -> zones with a private subnet
    hosts: tuple[CloudHost, ...]
    on_prem: tuple[OnPremSite, ...]
    trunk_hosts: dict[str, CloudHost]  # trunk id -> the host its interconnect lands on
    managed: dict[Service, dict[str, list[str]]]  # service -> region -> its placed sites, in order
    site_zones: dict[str, str]  # every site in the cloud -> its zone

    def resolver_zones(self, region: str) -> list[str]:
        """Zones of the DNS sites in a region: where Route 53 answers the city's forwarders."""
        sites = self.plan_sites(Service.DNS)
        return list(dict.fromkeys(self.site_zones[s] for s in sites if region_of(self.site_zones[s]) == region))

    def plan_sites(self, service: Service) -> list[str]:
        return [h.site for h in self.plan.running(service)]

    def in_region(self, region: str) -> list[CloudHost]:
        return [h for h in self.hosts if h.region == region]

    def running(self, service: Service) -> list[CloudHost]:
        return [h for h in self.hosts if h.runs(service)]



PRIVATE, INTERCONNECT = 0, 1  # subnet tiers: hosts, and the carrier-facing interfaces


def subnet_cidr(settings: Settings, region: str, zone: str, tier: int = PRIVATE) -> ipaddress.IPv4Network:
    """Each zone of a region takes two consecutive /24s of the region's VPC, in zone order."""
    vpc = ipaddress.ip_network(settings.regions[region].cidr)
    index = settings.regions[region].zones.index(zone) * 2 + tier
    return next(itertools.islice(vpc.subnets(new_prefix=24), index, None))


def region_of(zone: str) -> str:
    return zone[:-1]


def layout(estate: Estate, plan: Plan, settings: Settings) -> Layout:
    problems: list[str] = []
    zone_of = {site.id: site.cloud_zone for site in estate.sites if site.cloud_zone}
    for site_id, zone in settings.site_zones.items():
        if site_id not in zone_of and not _known(estate, site_id):
            problems.append(f"tsunagu:siteZones.{site_id}: no such site in the estate")
        zone_of.setdefault(site_id, zone)

    for site_id, zone in zone_of.items():
        region = region_of(zone)
        if region not in settings.regions:
            problems.append(f"site {site_id} is in {zone}, but tsunagu:regions has no {region}")
        elif zone not in settings.regions[region].zones:
            problems.append(f"site {site_id} is in {zone}, which is not among tsunagu:regions.{region}.zones")

    hosts: list[CloudHost] = []
    cloud_regions: set[str] = set()
    per_zone: dict[str, int] = {}
    for host in plan.hosts:
        if host.name == CARRIER_HOST:
            continue  # the lab's carrier simulator; production talks to the real carrier
        if host.site not in zone_of:
            if host.services:
                names = ", ".join(s.value for s in host.services)
                problems.append(
                    f"site {host.site} runs {names} but is on the city's premises: give it a zone "
                    f"with tsunagu:siteZones.{host.site} (or a cloud_zone in the estate)")
            continue
        zone = zone_of[host.site]
        region = region_of(zone)
        cloud_regions.add(region)
        services = _on_instance(host, settings)
        if not services or zone not in _configured_zones(settings, region):
            continue  # a site whose services all became managed, or a zone already reported above
        index = per_zone.get(zone, 0)
        per_zone[zone] = index + 1
        hosts.append(CloudHost(host.name, host.site, region, zone, services,
                               _address(settings, region, zone, index)))

    on_prem = []
    for site in estate.sites:
        if site.id in zone_of:
            continue
        given = settings.sites.get(site.id)
        lan = site.lan_cidr or (given.lan_cidr if given else None)
        if given is None or lan is None:
            problems.append(
                f"on-premises site {site.id} needs tsunagu:sites.{site.id}.gatewayIp"
                + ("" if lan else " and a lanCidr (in the estate or the stack)"))
            continue
        on_prem.append(OnPremSite(site.id, lan, given.gateway_ip))

    by_site = {h.site: h for h in hosts}
    trunk_hosts = {}
    for trunk in estate.trunks:
        host = by_site.get(trunk.site)
        if host is None or Service.PBX not in _planned(plan, trunk.site):
            problems.append(f"trunk {trunk.id} lands on {trunk.site}, which is not a cloud site running pbx")
        else:
            trunk_hosts[trunk.id] = host
        if trunk.id not in settings.carriers:
            problems.append(f"trunk {trunk.id} needs tsunagu:carriers.{trunk.id}.signalling")

    if not settings.managed_data_stores and not problems:
        hosts = _with_consensus(plan, hosts, settings, zone_of, per_zone)

    if problems:
        raise PlacementError("the estate does not fit this stack:\n  " + "\n  ".join(problems))

    primary = region_of(zone_of[estate.placement.pbx[0]])
    regions = tuple(sorted(cloud_regions, key=lambda r: (r != primary, r)))
    zones = {region: tuple(settings.regions[region].zones) for region in regions}
    managed = {}
    if settings.managed_data_stores:
        for service in MANAGED:
            placed: dict[str, list[str]] = {}
            for site_id in estate.placement.sites_for(service):
                placed.setdefault(region_of(zone_of[site_id]), []).append(site_id)
            managed[service] = placed
    return Layout(plan, regions, zones, tuple(hosts), tuple(on_prem), trunk_hosts, managed, zone_of)


def _with_consensus(plan: Plan, hosts: list[CloudHost], settings: Settings, zone_of: dict[str, str],
                    per_zone: dict[str, int]) -> list[CloudHost]:
    """Mark the plan's voters; a voter on the city's premises becomes a small witness instance.

    The lab's witness is often a city-hall namespace with no services. Pulumi cannot
    build at the city hall, and a vote that depends on the city's own WAN would defeat
    its purpose, so the witness goes to a zone no other voter uses, in the primary
    region first. Managed data stores fail over by themselves and need no voters.
    """
    voters = [h.name for h in plan.consensus()]
    out = [replace(h, consensus=h.name in voters) for h in hosts]
    taken = {h.zone for h in out if h.consensus}
    primary = region_of(zone_of[plan.running(Service.PBX)[0].site])
    candidates = [(r, z) for r in sorted(settings.regions, key=lambda r: r != primary)
                  for z in settings.regions[r].zones]
    names = {h.name for h in out}
    for n, _voter in enumerate(v for v in voters if v not in names):
        region, zone = next(((r, z) for r, z in candidates if z not in taken), candidates[-1])
        taken.add(zone)
        index = per_zone.get(zone, 0)
        per_zone[zone] = index + 1
        name = WITNESS if n == 0 else f"{WITNESS}-{n + 1}"
        out.append(CloudHost(name, None, region, zone, (), _address(settings, region, zone, index), True))
    return out


def _on_instance(host: Host, settings: Settings) -> tuple[Service, ...]:
    moved = CLOUD_PROVIDED + (MANAGED if settings.managed_data_stores else ())
    return tuple(s for s in host.services if s not in moved)


def _planned(plan: Plan, site: str) -> tuple[Service, ...]:
    return next((h.services for h in plan.hosts if h.site == site), ())


def _known(estate: Estate, site_id: str) -> bool:
    return any(s.id == site_id for s in estate.sites)


def _configured_zones(settings: Settings, region: str) -> list[str]:
    return settings.regions[region].zones if region in settings.regions else []


def _address(settings: Settings, region: str, zone: str, index: int) -> str:
    return str(subnet_cidr(settings, region, zone).network_address + FIRST_HOST_OFFSET + index)
