"""Stack settings and placement problems are reported before anything is declared, with the key to fix."""

from __future__ import annotations

import pytest

from infra import mocked
from infra.settings import SettingsInvalid
from infra.topology import PlacementError

from .infra_stacks import config


def run_tiny(**changes):
    settings = config("tiny")
    for key, value in changes.items():
        if value is None:
            settings.pop(key)
        else:
            settings[key] = value
    return mocked.run(settings, stack="broken")


def test_a_service_on_a_site_without_a_zone_names_the_config_key():
    with pytest.raises(PlacementError, match=r"site dc-west runs pbx, rtpengine, redis, postgresql, dns but is on "
                                             r"the city's premises: give it a zone with tsunagu:siteZones.dc-west"):
        run_tiny(siteZones={"dc-east": "ap-northeast-1a"})


def test_an_on_premises_site_needs_a_vpn_gateway():
    with pytest.raises(PlacementError, match=r"on-premises site hall needs tsunagu:sites.hall.gatewayIp and a lanCidr"):
        run_tiny(sites=None)


def test_every_trunk_needs_its_carriers_address():
    with pytest.raises(PlacementError, match=r"trunk kddi needs tsunagu:carriers.kddi.signalling"):
        run_tiny(carriers={"ntt-east": {"signalling": "192.0.2.10"}})


def test_a_zone_outside_the_configured_regions_is_refused():
    with pytest.raises(PlacementError, match=r"site dc-west is in ap-northeast-3d, which is not among"):
        run_tiny(siteZones={"dc-east": "ap-northeast-1a", "dc-west": "ap-northeast-3d"})


def test_invalid_settings_name_the_key():
    with pytest.raises(SettingsInvalid, match=r"tsunagu:adminRanges"):
        run_tiny(adminRanges=None)
    with pytest.raises(SettingsInvalid, match=r"managed data stores need two zones"):
        run_tiny(managedDataStores=True,
                 regions={"ap-northeast-1": {"cidr": "10.60.0.0/16", "zones": ["ap-northeast-1a"]},
                          "ap-northeast-3": {"cidr": "10.61.0.0/16", "zones": ["ap-northeast-3a"]}})
