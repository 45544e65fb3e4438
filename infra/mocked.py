"""Run the program under Pulumi's mocks and keep what it declared.

The Pulumi CLI is not needed: `run` configures the mock engine, calls
`program.build` and returns every resource with its inputs, its provider's region,
its parent and its dependencies, plus the resolved stack outputs. The tests and
`infra/graph.py` both use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

PROJECT = "tsunagu"
PROVIDER_TYPE = "pulumi:providers:aws"
# What AWS would report for the invokes the program makes.
INVOKE_RESULTS = {"aws:ssm/getParameter:getParameter": {"value": "ami-0debian12mock", "type": "String"}}


@dataclass
class Resource:
    type: str
    name: str
    urn: str
    inputs: dict
    state: dict
    custom: bool
    region: str | None = None
    parent: str | None = None
    dependencies: list[str] = field(default_factory=list)


@dataclass
class Run:
    resources: list[Resource]
    outputs: dict

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Resource:
        found = [r for r in self.of_type(type_) if r.name == name]
        assert len(found) == 1, f"{len(found)} resources of type {type_} named {name}"
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.counter = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.counter += 1
        state = dict(args.inputs)
        # Attributes the engine reports back that the program reads.
        if args.custom:
            state.setdefault("arn", f"arn:aws:mock:::{args.name}")
        if args.typ == "aws:ec2/eip:Eip":
            state["publicIp"] = f"198.51.100.{self.counter % 250 + 1}"
        if args.typ == "aws:ec2/instance:Instance":
            state["privateIp"] = args.inputs.get("privateIp")
        if args.typ == "aws:route53/zone:Zone":
            state["zoneId"] = f"Z{self.counter:08d}"
        if args.typ == "aws:s3/bucket:Bucket":
            state["bucket"] = f"{args.name}-{self.counter:04d}"
        if args.typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            state["primaryEndpointAddress"] = f"{args.name}.cache.mock.amazonaws.com"
        if args.typ == "aws:rds/instance:Instance":
            state["address"] = f"{args.name}.rds.mock.amazonaws.com"
        if args.typ == "aws:ec2/vpnConnection:VpnConnection":
            state.update(tunnel1Address=f"192.0.2.{self.counter % 250}", tunnel2Address="192.0.2.254",
                         transitGatewayAttachmentId=f"tgw-attach-{self.counter}")
        if args.typ == "aws:ec2transitgateway/transitGateway:TransitGateway":
            state["associationDefaultRouteTableId"] = f"tgw-rtb-{self.counter}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return INVOKE_RESULTS.get(args.token, {})


class _Monitor(pulumi_mocks.MockMonitor):
    """Records what the mocks API leaves out: each resource's parent, dependencies and provider."""

    def __init__(self, mocks):
        super().__init__(mocks)
        self.registrations: dict[str, dict] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.registrations[response.urn] = {
            "parent": request.parent or None, "dependencies": list(request.dependencies),
            "provider": request.provider or None, "custom": request.custom}
        return response


def run(config: dict, stack: str = "test") -> Run:
    """Run the program with `config` (keys without the `tsunagu:` prefix, values as Pulumi holds them)."""
    from . import program

    monitor = _Monitor(_Mocks())
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v)
                                   for k, v in config.items()})
    resolved: dict = {}

    @pulumi.runtime.test
    def deploy():
        outputs = program.build(program.read_settings())
        return pulumi.Output.from_input(outputs).apply(resolved.update)

    deploy()
    return Run(_resources(monitor), resolved)


def _resources(monitor: _Monitor) -> list[Resource]:
    regions = {}
    for urn, reg in monitor.resources.items():
        if urn.split("::")[-2].endswith(PROVIDER_TYPE):
            regions[urn] = reg.state.get("region")
    out = []
    for urn, reg in monitor.resources.items():
        extra = monitor.registrations.get(urn, {})
        provider = (extra.get("provider") or "").rsplit("::", 1)[0]
        type_ = urn.split("::")[-2].split("$")[-1]
        out.append(Resource(type_, urn.split("::")[-1], urn, reg.state, reg.state,
                            bool(extra.get("custom")), regions.get(provider), extra.get("parent"),
                            extra.get("dependencies", [])))
    return out


# Secrets a stack file holds encrypted (`pulumi config set --secret`), which a mocked run
# cannot decrypt: the program reads them only for managed data stores (infra/datastores.py).
STAND_IN_SECRETS = {"postgresSuperuserPassword": "stand-in-postgres-superuser",
                    "redisPassword": "stand-in-redis-password"}


def stack_config(stack: str) -> dict:
    """The `tsunagu:` config of a checked-in stack file, keys without the prefix, secrets stood in."""
    import yaml

    from .program import ROOT

    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    prefix = f"{PROJECT}:"
    return {**{k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}, **STAND_IN_SECRETS}
