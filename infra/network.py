"""Networks: a VPC per region, subnets per zone, the regions peered, the city's sites on VPN.

Each zone gets a private subnet for the hosts and an interconnect subnet, routed to
an internet gateway, that holds only the carrier-facing interfaces (`carrier.py`).
Sites reach every region over their own VPN, so losing Tokyo leaves Osaka reachable.
VPNs terminate on a transit gateway rather than a virtual private gateway, which
takes only ten VPN connections by default; a large city has more sites than that.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .settings import Settings
from .topology import INTERCONNECT, PRIVATE, Layout, subnet_cidr

CUSTOMER_GATEWAY_ASN = "65000"  # static routing; the ASN is only a label AWS requires


class RegionNetwork(pulumi.ComponentResource):
    def __init__(self, region: str, layout: Layout, settings: Settings, opts: pulumi.ResourceOptions):
        super().__init__("tsunagu:infra:RegionNetwork", region, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.region = region
        self.cidr = settings.regions[region].cidr
        self.vpc = aws.ec2.Vpc(region, cidr_block=self.cidr, enable_dns_hostnames=True,
                               enable_dns_support=True, tags={"Name": f"tsunagu-{region}"}, opts=child)
        self.private_routes = aws.ec2.RouteTable(f"{region}-private", vpc_id=self.vpc.id,
                                                 tags={"Name": f"{region}-private"}, opts=child)
        self.private_subnets: dict[str, aws.ec2.Subnet] = {}
        for zone in layout.zones[region]:
            subnet = aws.ec2.Subnet(f"{zone}-private", vpc_id=self.vpc.id, availability_zone=zone,
                                    cidr_block=str(subnet_cidr(settings, region, zone, PRIVATE)),
                                    map_public_ip_on_launch=False, tags={"Name": f"{zone}-private"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{zone}-private", subnet_id=subnet.id,
                                          route_table_id=self.private_routes.id, opts=child)
            self.private_subnets[zone] = subnet

        self.interconnect_subnets: dict[str, aws.ec2.Subnet] = {}
        carrier_zones = sorted({h.zone for h in layout.trunk_hosts.values() if h.region == region})
        if carrier_zones:
            gateway = aws.ec2.InternetGateway(region, vpc_id=self.vpc.id, tags={"Name": f"tsunagu-{region}"},
                                              opts=child)
            public = aws.ec2.RouteTable(f"{region}-interconnect", vpc_id=self.vpc.id,
                                        tags={"Name": f"{region}-interconnect"}, opts=child)
            aws.ec2.Route(f"{region}-interconnect-default", route_table_id=public.id,
                          destination_cidr_block="0.0.0.0/0", gateway_id=gateway.id, opts=child)
            for zone in carrier_zones:
                subnet = aws.ec2.Subnet(f"{zone}-interconnect", vpc_id=self.vpc.id, availability_zone=zone,
                                        cidr_block=str(subnet_cidr(settings, region, zone, INTERCONNECT)),
                                        map_public_ip_on_launch=False, tags={"Name": f"{zone}-interconnect"},
                                        opts=child)
                aws.ec2.RouteTableAssociation(f"{zone}-interconnect", subnet_id=subnet.id,
                                              route_table_id=public.id, opts=child)
                self.interconnect_subnets[zone] = subnet

        self.vpn_tunnels: dict[str, pulumi.Output] = {}
        if layout.on_prem:
            self._connect_sites(layout, child)
        self.register_outputs({"vpc_id": self.vpc.id})

    def _connect_sites(self, layout: Layout, child: pulumi.ResourceOptions) -> None:
        region = self.region
        transit = aws.ec2transitgateway.TransitGateway(
            region, description=f"Tsunagu sites to {region}", dns_support="enable",
            vpn_ecmp_support="enable", tags={"Name": f"tsunagu-{region}"}, opts=child)
        attachment = aws.ec2transitgateway.VpcAttachment(
            region, transit_gateway_id=transit.id, vpc_id=self.vpc.id,
            subnet_ids=[s.id for s in self.private_subnets.values()], opts=child)
        for site in layout.on_prem:
            name = f"{site.id}-{region}"
            gateway = aws.ec2.CustomerGateway(name, bgp_asn=CUSTOMER_GATEWAY_ASN, ip_address=site.gateway_ip,
                                              type="ipsec.1", tags={"Name": site.id}, opts=child)
            vpn = aws.ec2.VpnConnection(name, customer_gateway_id=gateway.id, transit_gateway_id=transit.id,
                                        type="ipsec.1", static_routes_only=True,
                                        tags={"Name": name, "tsunagu-site": site.id}, opts=child)
            aws.ec2transitgateway.Route(name, destination_cidr_block=site.lan_cidr,
                                        transit_gateway_attachment_id=vpn.transit_gateway_attachment_id,
                                        transit_gateway_route_table_id=transit.association_default_route_table_id,
                                        opts=child)
            aws.ec2.Route(name, route_table_id=self.private_routes.id, destination_cidr_block=site.lan_cidr,
                          transit_gateway_id=transit.id,
                          opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[attachment])))
            self.vpn_tunnels[site.id] = pulumi.Output.all(vpn.tunnel1_address, vpn.tunnel2_address)


def peer(requester: RegionNetwork, accepter: RegionNetwork, providers: dict[str, aws.Provider],
         parent: pulumi.Resource) -> None:
    """Peer two regions' VPCs and route each one's private subnets to the other."""
    name = f"{requester.region}-to-{accepter.region}"
    connection = aws.ec2.VpcPeeringConnection(
        name, vpc_id=requester.vpc.id, peer_vpc_id=accepter.vpc.id, peer_region=accepter.region,
        tags={"Name": name}, opts=pulumi.ResourceOptions(parent=parent, provider=providers[requester.region]))
    accepted = aws.ec2.VpcPeeringConnectionAccepter(
        name, vpc_peering_connection_id=connection.id, auto_accept=True, tags={"Name": name},
        opts=pulumi.ResourceOptions(parent=parent, provider=providers[accepter.region]))
    for near, far in ((requester, accepter), (accepter, requester)):
        aws.ec2.Route(f"{near.region}-to-{far.region}", route_table_id=near.private_routes.id,
                      destination_cidr_block=far.cidr, vpc_peering_connection_id=connection.id,
                      opts=pulumi.ResourceOptions(parent=parent, provider=providers[near.region],
                                                  depends_on=[accepted]))
