"""Route 53: the lab's SRV records, pointing at exactly the PBX nodes, and resolvers at fixed addresses."""

from __future__ import annotations

import ipaddress

import pytest

from tsunagu.model import Service
from tsunagu.plan import plan

from .infra_stacks import STACKS, config, deployed, estate_of

RECORD = "aws:route53/record:Record"


@pytest.mark.parametrize("stack", STACKS)
def test_srv_records_are_the_labs_and_point_at_exactly_the_pbx_nodes(stack):
    run, estate = deployed(stack), estate_of(stack)
    domain = estate.municipality.sip_domain
    srv = {r.inputs["name"]: r for r in run.of_type(RECORD) if r.inputs["type"] == "SRV"}
    expected: dict[str, list[str]] = {}
    for name, priority, weight, port, target in plan(estate).srv_records():
        expected.setdefault(name.rstrip("."), []).append(f"{priority} {weight} {port} {target}")
    assert {name: r.inputs["records"] for name, r in srv.items()} == expected
    assert sorted(run.outputs["srv_records"]) == sorted(expected)

    targets = {value.split()[3] for r in srv.values() for value in r.inputs["records"]}
    pbx_hosts = [h.name for h in plan(estate).running(Service.PBX)]
    assert targets == {f"{h}.{domain}." for h in pbx_hosts}
    assert run.outputs["hosts_by_role"]["pbx"] == pbx_hosts
    a_records = {r.inputs["name"]: r.inputs["records"] for r in run.of_type(RECORD) if r.inputs["type"] == "A"}
    for host in pbx_hosts:
        assert a_records[f"{host}.{domain}"] == [run.outputs["addresses"][host]]


@pytest.mark.parametrize("stack", STACKS)
def test_the_private_zone_serves_every_region(stack):
    run, estate = deployed(stack), estate_of(stack)
    zone = run.named("aws:route53/zone:Zone", estate.municipality.sip_domain)
    assert {v["vpcRegion"] for v in zone.inputs["vpcs"]} == set(run.outputs["regions"])


@pytest.mark.parametrize("stack", STACKS)
def test_inbound_resolvers_sit_in_the_dns_sites_zones_at_fixed_addresses(stack):
    run, estate = deployed(stack), estate_of(stack)
    zones = {s.cloud_zone or config(stack).get("siteZones", {}).get(s.id) for s in estate.sites}
    dns_zones = {(s.cloud_zone or config(stack)["siteZones"][s.id]) for s in estate.sites_running(Service.DNS)}
    assert dns_zones <= zones
    for endpoint in run.of_type("aws:route53/resolverEndpoint:ResolverEndpoint"):
        assert endpoint.inputs["direction"] == "INBOUND"
        addresses = endpoint.inputs["ipAddresses"]
        assert len(addresses) >= 2
        assert [a["ip"] for a in addresses] == run.outputs["dns_resolvers"][endpoint.region]
        subnet_zones = {a["subnetId"].removesuffix("-private-id") for a in addresses}
        assert {z for z in dns_zones if z.startswith(endpoint.region)} <= subnet_zones
        for address in addresses:
            zone = address["subnetId"].removesuffix("-private-id")
            subnet = run.named("aws:ec2/subnet:Subnet", f"{zone}-private")
            assert ipaddress.ip_address(address["ip"]) in ipaddress.ip_network(subnet.inputs["cidrBlock"])
