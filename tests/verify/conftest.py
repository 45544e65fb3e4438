"""Verification of deployed hosts with pytest-testinfra, run by `tsunagu verify`.

`tsunagu verify` runs this folder once per inventory host: inside the host's network
namespace with `--hosts=local://` in the lab, or with `--hosts=ssh://<address>` in
production. It selects the tests for the host's groups by marker (`-m "every_host or
pbx or ..."`), so a test marked `redis` runs on every Redis host and nowhere else.
The host learns who it is from TSUNAGU_INVENTORY and TSUNAGU_HOST, and where the
estate's secrets are from TSUNAGU_SECRETS.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# Markers by host group; `every_host` runs everywhere, `lab_host` only on lab namespaces.
MARKERS = ["every_host", "lab_host", "pbx", "rtpengine", "redis", "postgresql", "dns", "consensus", "carrier"]


def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line("markers", f"{marker}: checks for hosts in group {marker}")


@pytest.fixture(scope="session")
def inventory() -> dict:
    return yaml.safe_load(Path(os.environ["TSUNAGU_INVENTORY"]).read_text())["all"]


@pytest.fixture(scope="session")
def me(inventory) -> dict:
    """This host's inventory variables, plus `name` and `groups`."""
    name = os.environ["TSUNAGU_HOST"]
    groups = [g for g, d in inventory["children"].items() if name in ((d or {}).get("hosts") or {})]
    return {**inventory["hosts"][name], "name": name, "groups": groups}


@pytest.fixture(scope="session")
def members(inventory):
    """members(group) -> [(host name, host vars)] in placement order."""

    def of(group: str) -> list[tuple[str, dict]]:
        hosts = (inventory["children"].get(group) or {}).get("hosts") or {}
        return [(h, inventory["hosts"][h]) for h in hosts]

    return of


@pytest.fixture(scope="session")
def domain(inventory) -> str:
    return inventory["vars"]["tsunagu_sip_domain"]
