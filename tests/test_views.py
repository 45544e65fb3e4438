"""Derived views: plan, numbering, inventory, and the CLI that prints them."""

import ipaddress
import subprocess
import sys

from tsunagu.estate import load_estate
from tsunagu.inventory import GROUPS, from_plan
from tsunagu.model import Service
from tsunagu.numbering import destinations
from tsunagu.plan import CARRIER_HOST, plan
from tests.conftest import TINY


def test_plan_places_services_and_handsets():
    estate = load_estate(TINY)
    p = plan(estate)
    assert [h.name for h in p.running(Service.PBX)] == ["dc-east", "dc-west"]
    assert p.host("hall").handsets == len(estate.staff)
    assert p.host(CARRIER_HOST).services == ()
    addresses = [h.address for h in p.hosts]
    assert len(set(addresses)) == len(addresses)
    assert all(a in p.wan_subnet for a in addresses)
    for link in p.trunk_links:
        assert link.carrier_address in link.subnet and link.site_address in link.subnet
        assert not link.subnet.overlaps(p.wan_subnet)
        assert link.subnet.subnet_of(ipaddress.ip_network(estate.lab.address_pool))


def test_srv_records_point_at_pbx_nodes_in_placement_order():
    records = plan(load_estate(TINY)).srv_records()
    udp = [(prio, target) for name, prio, _, _, target in records if name.startswith("_sip._udp")]
    assert udp == [(10, "dc-east.shiken.tsunagu.test."), (20, "dc-west.shiken.tsunagu.test.")]


def test_every_published_number_reaches_its_group():
    dids = {d.number: d for d in destinations(load_estate(TINY))}
    assert len(dids) == 100
    assert dids["0736772511"].destination == "group:daihyo"
    assert dids["0736772520"].destination == "group:soumu"
    assert dids["0736772590"].porting == "planned/forwarding"
    assert dids["0736772599"].destination == "unassigned"


def test_lab_inventory_groups_follow_placement():
    inv = from_plan(plan(load_estate(TINY)), str(TINY), "/tmp/run")["all"]
    assert list(inv["children"]) == GROUPS
    assert list(inv["children"]["postgresql"]["hosts"]) == ["dc-east", "dc-west"]
    assert list(inv["children"]["carrier"]["hosts"]) == ["carrier"]
    assert inv["hosts"]["hall"]["tsunagu_netns"] == "tsu-hall"
    assert [t["id"] for t in inv["vars"]["tsunagu_trunks"]] == ["ntt-east", "kddi"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tsunagu.cli", *args], capture_output=True, text=True)


def test_cli_validate_prints_summary():
    out = run_cli("validate", str(TINY))
    assert out.returncode == 0, out.stderr
    assert "試験市 (Shiken City): valid estate" in out.stdout
    assert "staff        7 (manager 1, operator 1, staff 5)" in out.stdout


def test_cli_invalid_exits_2_with_located_problems(tiny_text, write_estate):
    path = write_estate(tiny_text.replace('extension: "2003"', 'extension: "2002"'))
    out = run_cli("validate", str(path))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{path}:58: staff[3].extension: duplicate extension '2002', already used by staff[2].extension",
        f"{path}: 1 problem",
    ]


def test_cli_plan_and_numbering():
    out = run_cli("plan", str(TINY))
    assert out.returncode == 0 and "10.251.0.12" in out.stdout and "_sip._udp.shiken.tsunagu.test." in out.stdout
    out = run_cli("numbering", str(TINY))
    assert out.returncode == 0
    assert "0736772530  department:shimin" in out.stdout
    assert "0736772599" not in out.stdout
    assert "0736772599" in run_cli("numbering", "--all", str(TINY)).stdout


def test_caller_id_entitlements():
    from tsunagu.numbering import presentable_numbers

    estate = load_estate(TINY)
    assert presentable_numbers(estate, "s4") == ["0736772530"]
    assert presentable_numbers(estate, "op1") == ["0736772520", "0736772511", "0736772599"]  # operator in 総務課
    assert presentable_numbers(estate, "s2") == ["0736772520", "0736772511", "0736772599"]
