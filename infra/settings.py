"""The stack's configuration (`tsunagu:*` keys in Pulumi.<stack>.yaml), typed and checked.

Everything that differs between cities and environments lives here rather than in
the program; the estate file stays the single description of the telephony itself.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

PRIMARY_REGION = "ap-northeast-1"  # Tokyo
DR_REGION = "ap-northeast-3"  # Osaka
# Debian's cloud team publishes the current AMI of each release as a public SSM parameter.
DEBIAN_AMI_PARAMETER = "/aws/service/debian/release/12/latest/amd64"


def _cidr(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=True))


Cidr = Annotated[str, AfterValidator(_cidr)]
Zone = Annotated[str, Field(pattern=r"^[a-z]{2}-[a-z]+-\d[a-z]$")]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              alias_generator=lambda name: _camel(name))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Region(Config):
    cidr: Cidr
    # Every zone a private subnet is made in; managed data stores need two.
    zones: list[Zone] = Field(min_length=1)

    @model_validator(mode="after")
    def _fits(self) -> Region:
        if ipaddress.ip_network(self.cidr).prefixlen > 20:
            raise ValueError(f"{self.cidr} is too small: give a region at least a /20 (two /24 per zone)")
        return self


class OnPremSite(Config):
    gateway_ip: str  # the public address of the site's VPN router
    lan_cidr: Cidr | None = None  # used when the estate's site has no lan_cidr


class Carrier(Config):
    signalling: str  # the carrier SBC's signalling address, handed to Kamailio's dispatcher
    sbc_ranges: list[Cidr] = Field(default_factory=list)  # where its SIP and media come from


class Opening(Config):
    """A deliberate exception to 'nothing open to the internet'."""

    direction: Literal["ingress", "egress"] = "ingress"
    protocol: Literal["tcp", "udp", "-1"]
    from_port: int = Field(default=0, ge=0, le=65535)
    to_port: int = Field(default=65535, ge=0, le=65535)
    reason: str = Field(min_length=1)


class PortRange(Config):
    first: int = Field(ge=1024, le=65535)
    last: int = Field(ge=1024, le=65535)


class Settings(Config):
    estate: str
    regions: dict[str, Region]
    site_zones: dict[str, Zone] = Field(default_factory=dict)
    sites: dict[str, OnPremSite] = Field(default_factory=dict)
    carriers: dict[str, Carrier] = Field(default_factory=dict)
    admin_ranges: list[Cidr] = Field(min_length=1)
    egress_ranges: list[Cidr] = Field(default_factory=list)  # e.g. the city's package proxy
    open_to_internet: list[Opening] = Field(default_factory=list)
    rtp_ports: PortRange = PortRange(first=30000, last=40000)
    managed_data_stores: bool = False
    instance_type: str = "c6i.large"
    cache_node_type: str = "cache.t4g.medium"
    db_instance_class: str = "db.t4g.medium"
    key_name: str | None = None
    ami_parameter: str = DEBIAN_AMI_PARAMETER

    @model_validator(mode="after")
    def _regions_known(self) -> Settings:
        for name, region in self.regions.items():
            if any(not zone.startswith(name) for zone in region.zones):
                raise ValueError(f"regions.{name}: every zone must be in {name}")
            if self.managed_data_stores and len(region.zones) < 2:
                raise ValueError(f"regions.{name}: managed data stores need two zones in each region")
        return self


class SettingsInvalid(ValueError):
    pass


KEYS = [_camel(name) for name in Settings.model_fields]


def from_config(read) -> Settings:
    """Build the settings from a `read(key)` that returns the parsed value or None."""
    raw = {key: value for key in KEYS if (value := read(key)) is not None}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = [f"tsunagu:{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise SettingsInvalid("stack configuration is invalid:\n  " + "\n  ".join(lines)) from None
