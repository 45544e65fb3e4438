"""The security policy every deployment must pass, checked before any rule is created.

The program builds each security-group rule as a `Rule`, runs `check` over all of
them, and only then declares the resources; a stack whose config widens a rule
(an admin or carrier range of 0.0.0.0/0, say) therefore fails at `pulumi preview`
instead of opening the PBX to the internet. The tests run the same check over the
rules the mocked deployment declared (`rules_from_resources`).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from .settings import Opening

INTERNET = ("0.0.0.0/0", "::/0")
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
# An address block this wide is the internet in all but name.
WIDEST_PREFIX = 8
# AWS's default quota of rules per security group and direction; more fails at `pulumi up`.
RULES_PER_DIRECTION = 60


class PolicyViolation(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    group: str  # the security group's logical name, e.g. 'ap-northeast-1-pbx'
    direction: str  # 'ingress' or 'egress'
    protocol: str  # 'tcp', 'udp' or '-1'
    from_port: int
    to_port: int
    cidr: str | None = None  # exactly one of cidr and peer_group is set
    peer_group: str | None = None
    description: str = ""

    @property
    def name(self) -> str:
        peer = (self.cidr or self.peer_group or "").replace("/", "-")
        ports = f"{self.from_port}-{self.to_port}" if self.from_port != self.to_port else f"{self.from_port}"
        return f"{self.group}-{self.direction}-{self.protocol.replace('-1', 'all')}-{ports}-{peer}"


def violations(rules: list[Rule], declared: list[Opening]) -> list[str]:
    found = []
    counts = Counter((r.group, r.direction) for r in rules)
    found += [f"{group}: {n} {direction} rules, more than the {RULES_PER_DIRECTION} AWS allows by default"
              for (group, direction), n in counts.items() if n > RULES_PER_DIRECTION]
    for rule in rules:
        if rule.cidr is None:
            continue
        network = ipaddress.ip_network(rule.cidr)
        if network.prefixlen >= WIDEST_PREFIX and rule.cidr not in INTERNET:
            continue
        if not any(_covers(opening, rule) for opening in declared):
            found.append(
                f"{rule.name}: {rule.direction} {rule.protocol} {rule.from_port}-{rule.to_port} "
                f"{'from' if rule.direction == 'ingress' else 'to'} {rule.cidr} is open to the internet; "
                "declare it in tsunagu:openToInternet if that is intended")
    return found


def check(rules: list[Rule], declared: list[Opening]) -> None:
    if found := violations(rules, declared):
        raise PolicyViolation("security policy violated:\n  " + "\n  ".join(found))


def _covers(opening: Opening, rule: Rule) -> bool:
    return (opening.direction == rule.direction
            and opening.protocol in (rule.protocol, "-1")
            and opening.from_port <= rule.from_port and rule.to_port <= opening.to_port)


def rules_from_resources(resources) -> list[Rule]:
    """Rules as declared to the engine (camelCase inputs), for checking a deployment after the fact."""
    out = []
    for r in resources:
        if r.type not in (INGRESS_RULE, EGRESS_RULE):
            continue
        i = r.inputs
        protocol = i["ipProtocol"]
        out.append(Rule(r.name, "ingress" if r.type == INGRESS_RULE else "egress", protocol,
                        i.get("fromPort", 0) if protocol != "-1" else 0,
                        i.get("toPort", 65535) if protocol != "-1" else 65535,
                        i.get("cidrIpv4") or i.get("cidrIpv6"), i.get("referencedSecurityGroupId")))
    return out
