"""The inventory of a deployed stack has the lab's format, and the same hosts in the same groups."""

from __future__ import annotations

import json

import pytest
import yaml

from infra.program import ROOT
from tsunagu import cli, inventory
from tsunagu.model import Service
from tsunagu.plan import plan
from tsunagu.stack_inventory import from_stack_outputs

from .infra_stacks import STACKS, config, deployed, estate_of


def lab_inventory(stack: str) -> dict:
    estate = estate_of(stack)
    return inventory.from_plan(plan(estate), str(ROOT / config(stack)["estate"]), "/tmp/run")


def shape(value):
    """Keys all the way down, with lists reduced to the shape of their first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_inventory_has_the_labs_shape(stack):
    cloud, lab = from_stack_outputs(deployed(stack).outputs), lab_inventory(stack)
    assert cloud["all"].keys() == lab["all"].keys()
    assert shape(cloud["all"]["vars"]) == shape(lab["all"]["vars"])
    assert cloud["all"]["children"].keys() == lab["all"]["children"].keys()
    for hostvars in cloud["all"]["hosts"].values():
        assert {"ansible_host", "tsunagu_address", "tsunagu_site"} <= hostvars.keys()
    lab_host = next(iter(lab["all"]["hosts"].values()))
    cloud_host = next(iter(cloud["all"]["hosts"].values()))
    assert list(cloud_host)[:3] == list(lab_host)[:3]
    assert cloud["all"]["vars"]["tsunagu_estate_file"] == lab["all"]["vars"]["tsunagu_estate_file"]
    assert cloud["all"]["vars"]["tsunagu_environment"] == stack


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_inventory_puts_the_same_hosts_in_the_same_groups_as_the_lab(stack):
    cloud, lab = from_stack_outputs(deployed(stack).outputs), lab_inventory(stack)
    managed = bool(config(stack).get("managedDataStores"))
    for group, members in lab["all"]["children"].items():
        cloud_members = list(cloud["all"]["children"][group]["hosts"])
        if group in ("dns", "carrier"):
            assert cloud_members == []  # Route 53 and the real carrier: nothing for Ansible to configure
        elif group == "consensus":
            # The voters on cloud sites, with witness instances for those on the city's premises.
            on_cloud = [h for h in members["hosts"] if h in cloud["all"]["hosts"]]
            if managed:
                assert cloud_members == []  # RDS and ElastiCache fail over by themselves
            else:
                assert cloud_members[: len(on_cloud)] == on_cloud and len(cloud_members) == len(members["hosts"])
        elif group == inventory.MANAGED:
            # The lab has none; a stack has exactly its ElastiCache and RDS endpoints.
            assert members["hosts"] == {}
            assert cloud_members == [h for h, v in cloud["all"]["hosts"].items() if v.get("tsunagu_managed")]
            assert bool(cloud_members) == managed
        elif managed and group in (Service.REDIS, Service.POSTGRESQL):
            assert all(cloud["all"]["hosts"][h]["tsunagu_managed"] for h in cloud_members)
            assert {cloud["all"]["hosts"][h]["tsunagu_site"] for h in cloud_members} <= set(members["hosts"])
        else:
            assert cloud_members == list(members["hosts"])
    lab_trunks = lab["all"]["vars"]["tsunagu_trunks"]
    cloud_trunks = cloud["all"]["vars"]["tsunagu_trunks"]
    assert [(t["id"], t["site"], t["role"]) for t in cloud_trunks] == [(t["id"], t["site"], t["role"])
                                                                       for t in lab_trunks]
    assert [t["site_address"] for t in cloud_trunks] == list(deployed(stack).outputs["carrier_addresses"].values())


@pytest.mark.parametrize("stack", ["small-city-prod", "large-city-prod"])
def test_tsunagu_inventory_from_stack_outputs_matches_the_programs_own_rendering(stack, tmp_path, capsys):
    outputs = deployed(stack).outputs
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs, ensure_ascii=False), encoding="utf-8")
    assert cli.main(["inventory", "--from-stack-outputs", str(outputs_file), "-o", str(tmp_path / "hosts.yml")]) == 0
    written = yaml.safe_load((tmp_path / "hosts.yml").read_text(encoding="utf-8"))
    assert written == yaml.safe_load(outputs["ansible_inventory"]) == from_stack_outputs(outputs)
    assert cli.main(["inventory", "--from-stack-outputs", str(outputs_file)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == written


def test_tsunagu_inventory_refuses_a_file_that_is_not_stack_outputs(tmp_path, capsys):
    bad = tmp_path / "outputs.json"
    bad.write_text('{"something": "else"}', encoding="utf-8")
    assert cli.main(["inventory", "--from-stack-outputs", str(bad)]) == 2
    assert "not the output of `pulumi stack output --json`" in capsys.readouterr().err
