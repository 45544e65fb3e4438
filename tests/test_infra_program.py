"""The whole Pulumi program under mocks: what the placement implies exists, where it should."""

from __future__ import annotations

import pytest

from infra import mocked
from infra.datastores import DB_MASTER_USER
from infra.settings import SettingsInvalid
from infra.topology import CLOUD_PROVIDED, MANAGED
from tsunagu.plan import CARRIER_HOST, plan

from .infra_stacks import STACKS, TINY, config, deployed, estate_of

INSTANCE = "aws:ec2/instance:Instance"
MANAGED_STACKS = ["tiny-managed", "large-city-prod"]


def zone_of(stack: str, site) -> str | None:
    return site.cloud_zone or config(stack).get("siteZones", {}).get(site.id)


def on_prem_sites(stack: str):
    return [s for s in estate_of(stack).sites if not zone_of(stack, s)]


def instance_services(stack: str, host) -> set[str]:
    moved = set(CLOUD_PROVIDED) | (set(MANAGED) if config(stack).get("managedDataStores") else set())
    return {s.value for s in host.services if s not in moved}


@pytest.mark.parametrize("stack", STACKS)
def test_each_planned_host_is_an_instance_in_its_sites_zone(stack):
    run, estate = deployed(stack), estate_of(stack)
    managed = bool(config(stack).get("managedDataStores"))
    voters = [] if managed else [h.name for h in plan(estate).consensus()]
    expected = {}
    for host in plan(estate).hosts:
        if host.name != CARRIER_HOST and instance_services(stack, host):
            groups = instance_services(stack, host) | ({"consensus"} if host.name in voters else set())
            expected[host.name] = (zone_of(stack, estate.site(host.site)), groups)
    instances = {r.name: r for r in run.of_type(INSTANCE)}
    witnesses = set(instances) - set(expected)
    assert set(expected) <= set(instances)
    # A voter the city keeps on its premises is stood in for by a witness instance.
    assert len(witnesses) == len([v for v in voters if v not in expected])
    for name, (zone, groups) in expected.items():
        instance = instances[name]
        assert instance.region == zone[:-1]
        assert instance.inputs["availabilityZone"] == zone
        assert instance.inputs["subnetId"] == f"{zone}-private-id"
        assert instance.inputs["privateIp"] == run.outputs["addresses"][name]
        assert set(instance.inputs["tags"]["tsunagu-groups"].split()) == groups
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True
    voter_zones = [instances[v].inputs["availabilityZone"] for v in voters if v in instances]
    for name in witnesses:
        assert instances[name].inputs["tags"]["tsunagu-groups"] == "consensus"
        assert instances[name].inputs["availabilityZone"] not in voter_zones[:-1]
    assert len({instances[n].inputs["availabilityZone"] for n in voters if n in instances}
               | {instances[w].inputs["availabilityZone"] for w in witnesses}) >= min(3, len(voters))


@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_resource_is_created_by_the_provider_of_its_region(stack):
    run = deployed(stack)
    regions = set(config(stack)["regions"])
    providers = {r.inputs["region"] for r in run.of_type("pulumi:providers:aws")}
    assert providers <= regions
    for resource in run.resources:
        if resource.custom and resource.type != "pulumi:providers:aws":
            assert resource.region in providers, resource.urn
        zone = resource.inputs.get("availabilityZone")
        if zone:
            assert resource.region == zone[:-1], resource.urn


@pytest.mark.parametrize("stack", STACKS)
def test_a_vpc_per_region_with_a_private_subnet_per_zone_and_the_regions_peered(stack):
    run, regions = deployed(stack), config(stack)["regions"]
    used = list(run.outputs["regions"])
    for region in used:
        vpc = run.named("aws:ec2/vpc:Vpc", region)
        assert (vpc.region, vpc.inputs["cidrBlock"]) == (region, regions[region]["cidr"])
        for zone in regions[region]["zones"]:
            subnet = run.named("aws:ec2/subnet:Subnet", f"{zone}-private")
            assert subnet.inputs["vpcId"] == f"{region}-id"
            assert subnet.inputs["mapPublicIpOnLaunch"] is False
    assert used[0] == "ap-northeast-1"  # the preferred primary PBX is in Tokyo in every example
    if len(used) == 2:
        tokyo, osaka = used
        peering = run.named("aws:ec2/vpcPeeringConnection:VpcPeeringConnection", f"{tokyo}-to-{osaka}")
        assert (peering.region, peering.inputs["peerRegion"]) == (tokyo, osaka)
        accepter = run.named("aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter",
                             f"{tokyo}-to-{osaka}")
        assert accepter.region == osaka and accepter.inputs["autoAccept"] is True
        for near, far in ((tokyo, osaka), (osaka, tokyo)):
            route = run.named("aws:ec2/route:Route", f"{near}-to-{far}")
            assert route.region == near
            assert route.inputs["destinationCidrBlock"] == regions[far]["cidr"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_site_on_the_premises_has_a_vpn_to_every_region_with_its_lan(stack):
    run, sites_config = deployed(stack), config(stack)["sites"]
    sites = on_prem_sites(stack)
    assert sites
    for site in sites:
        lan = site.lan_cidr or sites_config[site.id]["lanCidr"]
        for region in run.outputs["regions"]:
            name = f"{site.id}-{region}"
            gateway = run.named("aws:ec2/customerGateway:CustomerGateway", name)
            assert (gateway.region, gateway.inputs["ipAddress"]) == (region, sites_config[site.id]["gatewayIp"])
            vpn = run.named("aws:ec2/vpnConnection:VpnConnection", name)
            assert vpn.inputs["customerGatewayId"] == f"{name}-id"
            assert vpn.inputs["staticRoutesOnly"] is True
            assert run.named("aws:ec2transitgateway/route:Route", name).inputs["destinationCidrBlock"] == lan
            assert run.named("aws:ec2/route:Route", name).inputs["destinationCidrBlock"] == lan
    assert len(run.of_type("aws:ec2/vpnConnection:VpnConnection")) == len(sites) * len(run.outputs["regions"])


@pytest.mark.parametrize("stack", STACKS)
def test_each_trunk_has_an_elastic_ip_on_its_pbx_hosts_carrier_interface(stack):
    run, estate = deployed(stack), estate_of(stack)
    for trunk in estate.trunks:
        zone = zone_of(stack, estate.site(trunk.site))
        eip = run.named("aws:ec2/eip:Eip", trunk.id)
        interface = run.named("aws:ec2/networkInterface:NetworkInterface", f"{trunk.id}-interconnect")
        attachment = run.named("aws:ec2/networkInterfaceAttachment:NetworkInterfaceAttachment",
                               f"{trunk.id}-interconnect")
        assert eip.region == interface.region == zone[:-1]
        assert eip.inputs["domain"] == "vpc" and eip.inputs["networkInterface"] == interface.name + "-id"
        assert interface.inputs["subnetId"] == f"{zone}-interconnect-id"
        assert interface.inputs["securityGroups"] == [f"carrier-{trunk.id}-id"]
        assert attachment.inputs["instanceId"] == f"{trunk.site}-id"
        assert run.outputs["carrier_addresses"][trunk.id] == eip.state["publicIp"]


@pytest.mark.parametrize("stack", STACKS)
def test_data_stores_have_no_public_address(stack):
    run = deployed(stack)
    attached = {r.inputs["instanceId"] for r in run.of_type(
        "aws:ec2/networkInterfaceAttachment:NetworkInterfaceAttachment")}
    for instance in run.of_type(INSTANCE):
        assert instance.inputs["associatePublicIpAddress"] is False
        services = set(instance.inputs["tags"]["tsunagu-groups"].split())
        if services & {"redis", "postgresql"} and "pbx" not in services:
            assert f"{instance.name}-id" not in attached
    assert not any("publicIp" in r.inputs for r in run.of_type(INSTANCE))
    for database in run.of_type("aws:rds/instance:Instance"):
        assert database.inputs["publiclyAccessible"] is False
        assert database.inputs["storageEncrypted"] is True


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_managed_data_stores_replace_redis_and_postgresql_hosts(stack):
    run, estate = deployed(stack), estate_of(stack)
    redis_regions = {zone_of(stack, estate.site(s))[:-1] for s in estate.placement.redis}
    groups = run.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert {g.region for g in groups} == redis_regions
    for group in groups:
        assert group.inputs["automaticFailoverEnabled"] is True and group.inputs["multiAzEnabled"] is True
        azs = group.inputs["preferredCacheClusterAzs"]
        assert len(set(azs)) == len(azs) == group.inputs["numCacheClusters"] >= 2
        assert group.inputs["securityGroupIds"] == [f"{group.region}-redis-id"]
        assert group.inputs["atRestEncryptionEnabled"] is True

    databases = run.of_type("aws:rds/instance:Instance")
    primary_region = zone_of(stack, estate.site(estate.placement.postgresql[0]))[:-1]
    primary = run.named("aws:rds/instance:Instance", f"{primary_region}-postgresql")
    assert primary.inputs["multiAz"] is True and primary.region == primary_region
    replicas = [d for d in databases if d is not primary]
    assert all(d.inputs["replicateSourceDb"] == primary.state["arn"] for d in replicas)
    assert {d.region for d in databases} == {zone_of(stack, estate.site(s))[:-1]
                                             for s in estate.placement.postgresql}

    roles = run.outputs["hosts_by_role"]
    assert roles["redis"] == [f"redis-{r}" for r in sorted(redis_regions, key=lambda r: r != primary_region)]
    assert all(name.startswith("postgresql-") for name in roles["postgresql"])


def secret_value(value):
    """An input Pulumi keeps secret arrives under the mocks as {<secret signature>: ..., 'value': ...}."""
    assert isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value, value
    return value["value"]


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_managed_data_stores_take_the_estates_passwords_from_secret_config(stack):
    run, given = deployed(stack), config(stack)
    primaries = [d for d in run.of_type("aws:rds/instance:Instance") if "replicateSourceDb" not in d.inputs]
    assert len(primaries) == 1
    assert primaries[0].inputs["username"] == DB_MASTER_USER == "postgres"
    assert secret_value(primaries[0].inputs["password"]) == given["postgresSuperuserPassword"]
    assert "manageMasterUserPassword" not in primaries[0].inputs
    for group in run.of_type("aws:elasticache/replicationGroup:ReplicationGroup"):
        assert group.inputs["transitEncryptionEnabled"] is True  # AUTH needs TLS
        assert secret_value(group.inputs["authToken"]) == given["redisPassword"]


def test_managed_data_stores_without_the_passwords_fail_by_name():
    with pytest.raises(SettingsInvalid, match=r"tsunagu:redisPassword: managed data stores need the estate's "
                                              r"services\.redis") as caught:
        mocked.run({**TINY, "managedDataStores": True, "postgresSuperuserPassword": "x"}, stack="no-passwords")
    assert "postgresSuperuserPassword" not in str(caught.value)


def test_hosts_keep_their_data_stores_without_the_managed_option():
    run = deployed("small-city-prod")
    assert not run.of_type("aws:rds/instance:Instance")
    assert run.outputs["hosts_by_role"]["redis"] == ["cloud-tokyo", "cloud-osaka"]
    assert run.outputs["data_stores"] == {}
