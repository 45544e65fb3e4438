"""Managed data stores (stack option `tsunagu:managedDataStores`): ElastiCache and RDS.

Redis becomes an ElastiCache replication group in each region where the placement
puts Redis, with a replica in a second zone and automatic failover. PostgreSQL
becomes a Multi-AZ RDS instance in the region of the first PostgreSQL site, with a
cross-region read replica in each other region the placement names. Neither is
publicly accessible; both take traffic only through their security groups.

Ansible logs in to them with the estate's own secrets (`secrets/<sip_domain>.yaml`),
so the stack takes the same passwords as config secrets (`Passwords`) instead of
letting AWS generate them: RDS's master user is the `postgres` superuser the
`pbx_data` role creates Kamailio's database as, and ElastiCache's AUTH token is the
password the lab's Redis requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from tsunagu.model import Service

from .network import RegionNetwork
from .security import SecurityGroups, group_name
from .settings import Settings
from .topology import Layout

REDIS_ENGINE_VERSION = "7.1"
POSTGRESQL_ENGINE_VERSION = "15"  # the version the lab runs (Debian 12)
DB_STORAGE_GB = 50
BACKUP_DAYS = 7  # also what lets RDS keep read replicas
DB_MASTER_USER = "postgres"  # the pbx_data role's default admin user, as on the hosts' own PostgreSQL
# Stack config secrets (`pulumi config set --secret tsunagu:<key>`) -> the estate's secret.
PASSWORD_KEYS = {"postgresSuperuserPassword": "postgres_superuser", "redisPassword": "redis"}


@dataclass(frozen=True)
class Passwords:
    postgres_superuser: pulumi.Output[str]
    redis: pulumi.Output[str]


class ManagedEndpoint:
    def __init__(self, service: Service, region: str, site: str, address: pulumi.Output[str], kind: str):
        self.service, self.region, self.site, self.address, self.kind = service, region, site, address, kind

    @property
    def name(self) -> str:
        return f"{self.service.value}-{self.region}"


class DataStores(pulumi.ComponentResource):
    def __init__(self, layout: Layout, settings: Settings, passwords: Passwords,
                 networks: dict[str, RegionNetwork], groups: dict[str, SecurityGroups],
                 providers: dict[str, aws.Provider], opts: pulumi.ResourceOptions | None = None):
        super().__init__("tsunagu:infra:DataStores", "data-stores", None, opts)
        self.endpoints: list[ManagedEndpoint] = []
        self.passwords = passwords
        for region, sites in layout.managed[Service.REDIS].items():
            zones = [layout.site_zones[s] for s in sites]
            self._redis(region, sites[0], zones, settings, networks[region], groups[region],
                        pulumi.ResourceOptions(parent=self, provider=providers[region]))
        primary = None
        # Placement order: the region of the first PostgreSQL site holds the primary.
        for region, sites in layout.managed[Service.POSTGRESQL].items():
            primary = self._postgresql(region, sites[0], settings, networks[region], groups[region],
                                       pulumi.ResourceOptions(parent=self, provider=providers[region]), primary)
        self.register_outputs({})

    def _redis(self, region, site, zones, settings, network, groups, opts) -> None:
        spare = [z for z in network.private_subnets if z not in zones]
        azs = list(dict.fromkeys(zones)) + spare[: max(0, 2 - len(set(zones)))]
        subnets = aws.elasticache.SubnetGroup(f"{region}-redis", description="Tsunagu Redis",
                                              subnet_ids=[s.id for s in network.private_subnets.values()],
                                              opts=opts)
        group = aws.elasticache.ReplicationGroup(
            f"{region}-redis", description="Tsunagu shared state (locations, rotation, busy)",
            engine="redis", engine_version=REDIS_ENGINE_VERSION, node_type=settings.cache_node_type,
            num_cache_clusters=len(azs), preferred_cache_cluster_azs=azs,
            automatic_failover_enabled=True, multi_az_enabled=True,
            subnet_group_name=subnets.name, security_group_ids=groups.ids(group_name(region, "redis")),
            # AUTH needs TLS in transit. No Ansible role or Kamailio module talks to Redis
            # today; a client that does must use TLS and this password (docs/infra.md).
            at_rest_encryption_enabled=True, transit_encryption_enabled=True,
            auth_token=self.passwords.redis, opts=opts)
        self.endpoints.append(ManagedEndpoint(Service.REDIS, region, site, group.primary_endpoint_address,
                                              "elasticache"))

    def _postgresql(self, region, site, settings, network, groups, opts, primary):
        subnets = aws.rds.SubnetGroup(f"{region}-postgresql", description="Tsunagu PostgreSQL",
                                      subnet_ids=[s.id for s in network.private_subnets.values()], opts=opts)
        common = {"instance_class": settings.db_instance_class, "db_subnet_group_name": subnets.name,
                      "vpc_security_group_ids": groups.ids(group_name(region, "postgresql")),
                      "publicly_accessible": False, "storage_encrypted": True, "opts": opts}
        if primary is None:
            instance = aws.rds.Instance(
                f"{region}-postgresql", engine="postgres", engine_version=POSTGRESQL_ENGINE_VERSION,
                allocated_storage=DB_STORAGE_GB, storage_type="gp3", multi_az=True, db_name="tsunagu",
                username=DB_MASTER_USER, password=self.passwords.postgres_superuser,
                backup_retention_period=BACKUP_DAYS,
                deletion_protection=True, final_snapshot_identifier="tsunagu-final", **common)
        else:
            # An encrypted replica in another region must name a key of its own region.
            key = aws.kms.Key(f"{region}-postgresql", description="Tsunagu PostgreSQL replica",
                              enable_key_rotation=True, opts=opts)
            instance = aws.rds.Instance(f"{region}-postgresql", replicate_source_db=primary.arn,
                                        kms_key_id=key.arn, skip_final_snapshot=True, **common)
        self.endpoints.append(ManagedEndpoint(Service.POSTGRESQL, region, site, instance.address, "rds"))
        return primary or instance
