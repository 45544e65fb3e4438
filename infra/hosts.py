"""One instance per planned host in the cloud, running the services the placement puts there.

The instances mirror the lab's hosts one to one (same names, same services), so the
Ansible roles see the same groups in both. Addresses are fixed (`topology`), data
stores never get a public address, and nothing reaches an instance except through
its security groups.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .network import RegionNetwork
from .security import HOST, SecurityGroups, group_name
from .settings import Settings
from .topology import CloudHost

ROOT_VOLUME_GB = 30


class SiteHost(pulumi.ComponentResource):
    def __init__(self, host: CloudHost, network: RegionNetwork, groups: SecurityGroups, ami: pulumi.Input[str],
                 settings: Settings, opts: pulumi.ResourceOptions):
        super().__init__("tsunagu:infra:SiteHost", host.name, None, opts)
        self.host = host
        roles = [HOST] + host.groups
        self.instance = aws.ec2.Instance(
            host.name,
            ami=ami,
            instance_type=settings.instance_type,
            availability_zone=host.zone,
            subnet_id=network.private_subnets[host.zone].id,
            private_ip=host.address,
            vpc_security_group_ids=groups.ids(*(group_name(host.region, r) for r in roles)),
            associate_public_ip_address=False,
            key_name=settings.key_name,
            metadata_options={"http_tokens": "required"},
            root_block_device={"encrypted": True, "volume_size": ROOT_VOLUME_GB, "volume_type": "gp3"},
            tags={"Name": host.name, "tsunagu-site": host.site or "", "tsunagu-groups": " ".join(host.groups)},
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"private_ip": self.instance.private_ip})


def debian_ami(settings: Settings, provider: aws.Provider) -> pulumi.Output[str]:
    parameter = aws.ssm.get_parameter_output(name=settings.ami_parameter,
                                             opts=pulumi.InvokeOutputOptions(provider=provider))
    return parameter.value
