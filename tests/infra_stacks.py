"""Mocked deployments shared by the tests/test_infra_*.py files, each run once per session."""

from __future__ import annotations

import functools

from infra import mocked
from infra.program import ROOT
from tsunagu.estate import load_estate

# tiny.yaml keeps its services in two datacenters, so the stack moves them to zones.
TINY = {
    "estate": "tests/data/tiny.yaml",
    "regions": {"ap-northeast-1": {"cidr": "10.60.0.0/16", "zones": ["ap-northeast-1a", "ap-northeast-1c"]},
                "ap-northeast-3": {"cidr": "10.61.0.0/16", "zones": ["ap-northeast-3a", "ap-northeast-3b"]}},
    "siteZones": {"dc-east": "ap-northeast-1a", "dc-west": "ap-northeast-3a"},
    "sites": {"hall": {"gatewayIp": "203.0.113.10", "lanCidr": "172.20.0.0/16"}},
    "carriers": {"ntt-east": {"signalling": "192.0.2.10", "sbcRanges": ["192.0.2.0/28"]},
                 "kddi": {"signalling": "198.51.100.10"}},
    "adminRanges": ["172.20.99.0/24"],
}
STACKS = ["tiny", "tiny-managed", "small-city-prod", "large-city-prod"]


def config(stack: str) -> dict:
    if stack == "tiny":
        return dict(TINY)
    if stack == "tiny-managed":
        return {**TINY, "managedDataStores": True, **mocked.STAND_IN_SECRETS}
    return mocked.stack_config(stack)


@functools.cache
def deployed(stack: str) -> mocked.Run:
    return mocked.run(config(stack), stack=stack)


@functools.cache
def estate_of(stack: str):
    return load_estate(ROOT / config(stack)["estate"])
