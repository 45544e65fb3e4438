"""Security groups at property level, and the policy that refuses a rule open to the internet."""

from __future__ import annotations

import ipaddress

import pytest

from infra import mocked, policy
from infra.policy import PolicyViolation, Rule
from infra.settings import Opening

from .infra_stacks import STACKS, config, deployed, estate_of

SIP = {("udp", 5060, 5060), ("tcp", 5060, 5060), ("tcp", 5061, 5061)}


def ingress(run, group: str) -> list[Rule]:
    """The ingress rules of one security group, as the engine received them."""
    return [r for r in policy.rules_from_resources(run.resources)
            if r.direction == "ingress" and _group_of(run, r) == group]


def _group_of(run, rule: Rule) -> str:
    resource = next(x for x in run.resources if x.name == rule.group and x.type == policy.INGRESS_RULE)
    return resource.inputs["securityGroupId"].removesuffix("-id")


def covered(cidr: str, ranges) -> bool:
    """Whether every address of cidr lies within the union of ranges."""
    union = ipaddress.collapse_addresses(ipaddress.ip_network(r) for r in ranges)
    return any(ipaddress.ip_network(cidr).subnet_of(block) for block in union)


def site_lans(stack: str) -> list[str]:
    sites = config(stack).get("sites", {})
    zones = config(stack).get("siteZones", {})
    return [s.lan_cidr or sites[s.id]["lanCidr"] for s in estate_of(stack).sites
            if not s.cloud_zone and s.id not in zones]


@pytest.mark.parametrize("stack", STACKS)
def test_nothing_is_open_to_the_internet(stack):
    rules = policy.rules_from_resources(deployed(stack).resources)
    assert rules
    assert policy.violations(rules, declared=[]) == []
    assert not any(r.cidr in policy.INTERNET for r in rules)


@pytest.mark.parametrize("stack", STACKS)
def test_sip_reaches_pbx_only_from_sites_and_other_pbx_nodes(stack):
    run = deployed(stack)
    addresses = run.outputs["addresses"]
    pbx_addresses = {f"{addresses[h]}/32" for h in run.outputs["hosts_by_role"]["pbx"]}
    lans = site_lans(stack)
    for region in run.outputs["regions"]:
        rules = ingress(run, f"{region}-pbx")
        assert {(r.protocol, r.from_port, r.to_port) for r in rules} == SIP
        for rule in rules:
            if rule.cidr:
                assert covered(rule.cidr, lans) or rule.cidr in pbx_addresses, rule
            else:
                assert rule.peer_group == f"{region}-pbx-id"
        # every site can reach every SIP port
        for lan in lans:
            for port in SIP:
                assert any(r.cidr and covered(lan, [r.cidr]) and (r.protocol, r.from_port, r.to_port) == port
                           for r in rules), (lan, port)


@pytest.mark.parametrize("stack", STACKS)
def test_rtp_reaches_rtpengine_only_from_sites(stack):
    run = deployed(stack)
    lans = site_lans(stack)
    for region in run.outputs["regions"]:
        media = [r for r in ingress(run, f"{region}-rtpengine") if r.protocol == "udp" and r.from_port >= 1024
                 and r.to_port - r.from_port > 1]
        assert media and all(covered(r.cidr, lans) for r in media)
        assert {(r.from_port, r.to_port) for r in media} == {(30000, 40000)}


@pytest.mark.parametrize("stack", STACKS)
def test_redis_and_postgresql_only_from_pbx_hosts_and_their_replicas(stack):
    run = deployed(stack)
    addresses = run.outputs["addresses"]
    for service, ports in (("redis", {6379, 26379}), ("postgresql", {5432})):
        peers = {f"{addresses[h]}/32" for h in run.outputs["hosts_by_role"]["pbx"]
                 + run.outputs["hosts_by_role"][service] if h in addresses}
        for region in run.outputs["regions"]:
            rules = ingress(run, f"{region}-{service}")
            assert rules and {r.from_port for r in rules} == ports
            for rule in rules:
                assert rule.peer_group in (f"{region}-pbx-id", f"{region}-{service}-id") or rule.cidr in peers, rule


@pytest.mark.parametrize("stack", STACKS)
def test_ssh_only_from_the_admin_range(stack):
    run = deployed(stack)
    ssh = [r for r in policy.rules_from_resources(run.resources)
           if r.direction == "ingress" and r.from_port <= 22 <= r.to_port]
    assert ssh and {r.cidr for r in ssh} == set(config(stack)["adminRanges"])


@pytest.mark.parametrize("stack", STACKS)
def test_carrier_interfaces_take_sip_and_rtp_only_from_their_sbc(stack):
    run = deployed(stack)
    for trunk in estate_of(stack).trunks:
        carrier = config(stack)["carriers"][trunk.id]
        ranges = carrier.get("sbcRanges") or [f"{carrier['signalling']}/32"]
        rules = ingress(run, f"carrier-{trunk.id}")
        assert {r.cidr for r in rules} == set(ranges)
        assert {(r.protocol, r.from_port, r.to_port) for r in rules} == SIP | {("udp", 30000, 40000)}


def test_a_rule_open_to_the_internet_on_5060_is_a_violation():
    widened = Rule("ap-northeast-1-pbx", "ingress", "udp", 5060, 5060, cidr="0.0.0.0/0")
    with pytest.raises(PolicyViolation, match="5060.*0.0.0.0/0 is open to the internet"):
        policy.check([widened], declared=[])
    almost = Rule("ap-northeast-1-pbx", "ingress", "udp", 5060, 5060, cidr="0.0.0.0/1")
    assert policy.violations([almost], declared=[])
    declared = Opening(protocol="udp", from_port=5060, to_port=5060, reason="public SIP trunk")
    policy.check([widened], declared=[declared])
    assert policy.violations([widened], [declared.model_copy(update={"protocol": "tcp"})])


def test_widening_a_range_through_stack_config_fails_the_deployment():
    widened = config("tiny")
    widened["carriers"] = {**widened["carriers"], "kddi": {"signalling": "198.51.100.10",
                                                          "sbcRanges": ["0.0.0.0/0"]}}
    with pytest.raises(PolicyViolation, match="carrier-kddi-ingress-udp-5060-0.0.0.0-0"):
        mocked.run(widened, stack="widened")


def test_an_opening_declared_in_stack_config_is_allowed_and_no_wider():
    opened = config("tiny")
    opened["carriers"] = {**opened["carriers"], "kddi": {"signalling": "198.51.100.10",
                                                        "sbcRanges": ["0.0.0.0/0"]}}
    opened["openToInternet"] = [{"protocol": "udp", "fromPort": 5060, "toPort": 5060, "reason": "test"},
                                {"protocol": "tcp", "fromPort": 5060, "toPort": 5061, "reason": "test"},
                                {"protocol": "udp", "fromPort": 30000, "toPort": 40000, "reason": "test"},
                                {"direction": "egress", "protocol": "-1", "reason": "test"}]
    run = mocked.run(opened, stack="opened")
    open_rules = [r for r in policy.rules_from_resources(run.resources) if r.cidr == "0.0.0.0/0"]
    assert {r.group.split("-")[1] for r in open_rules} == {"kddi"}


def test_too_many_rules_for_a_security_group_is_a_violation():
    rules = [Rule("g", "ingress", "udp", 5060, 5060, cidr=f"10.{i}.0.0/16") for i in range(61)]
    assert "more than the 60" in policy.violations(rules, [])[0]


def test_the_large_city_stays_within_the_rule_quota_by_collapsing_site_ranges():
    rules = policy.rules_from_resources(deployed("large-city-prod").resources)
    assert policy.violations(rules, []) == []
    pbx = [r for r in rules if r.group.startswith("ap-northeast-1-pbx-ingress") and r.cidr]
    assert len(pbx) < len(site_lans("large-city-prod")) * len(SIP)


@pytest.mark.parametrize("stack", ["tiny", "small-city-prod"])
def test_etcd_and_sentinel_only_between_voters_and_from_pbx(stack):
    run = deployed(stack)
    addresses = run.outputs["addresses"]
    voters = {f"{addresses[h]}/32" for h in run.outputs["hosts_by_role"]["consensus"] if h in addresses}
    pbx = {f"{addresses[h]}/32" for h in run.outputs["hosts_by_role"]["pbx"]}
    for region in run.outputs["regions"]:
        for rule in ingress(run, f"{region}-consensus"):
            if rule.from_port == 2379:
                assert rule.peer_group == f"{region}-consensus-id" or rule.cidr in voters, rule
            else:
                assert rule.from_port == 26379
                assert rule.peer_group in (f"{region}-consensus-id", f"{region}-pbx-id") \
                    or rule.cidr in voters | pbx, rule
