"""Carrier interconnect: an Elastic IP per trunk, on its own interface of the trunk's PBX host.

The carrier-facing interface sits in the zone's interconnect subnet and carries only
the trunk's carrier security group, so the carrier's SBC reaches SIP and RTP on that
address and nothing else; the host's private interface never faces the internet.
The Elastic IP is what the carrier is told to send calls to.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .hosts import SiteHost
from .network import RegionNetwork
from .security import SecurityGroups, carrier_group


class CarrierInterconnect(pulumi.ComponentResource):
    def __init__(self, trunk: str, device_index: int, host: SiteHost, network: RegionNetwork,
                 groups: SecurityGroups, opts: pulumi.ResourceOptions):
        super().__init__("tsunagu:infra:CarrierInterconnect", trunk, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = host.host.zone
        self.interface = aws.ec2.NetworkInterface(
            f"{trunk}-interconnect", subnet_id=network.interconnect_subnets[zone].id,
            security_groups=groups.ids(carrier_group(trunk)),
            description=f"carrier interconnect for trunk {trunk}",
            tags={"Name": f"{trunk}-interconnect", "tsunagu-trunk": trunk}, opts=child)
        self.address = aws.ec2.Eip(trunk, domain="vpc", network_interface=self.interface.id,
                                   tags={"Name": trunk, "tsunagu-trunk": trunk}, opts=child)
        aws.ec2.NetworkInterfaceAttachment(f"{trunk}-interconnect", instance_id=host.instance.id,
                                           network_interface_id=self.interface.id,
                                           device_index=device_index, opts=child)
        self.register_outputs({"public_ip": self.address.public_ip})
