"""Derived views: plan, numbering, inventory, and the CLI that prints them."""

import ipaddress
import subprocess
import sys

from tests.conftest import TINY
from tsunagu.estate import load_estate
from tsunagu.inventory import GROUPS, from_plan
from tsunagu.model import Service
from tsunagu.numbering import destinations
from tsunagu.plan import CARRIER_HOST, plan


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


def test_secrets_are_generated_once_and_private(tmp_path):
    from tsunagu.secrets import ensure_secrets, secrets_file

    estate = load_estate(TINY)
    first = ensure_secrets(estate, tmp_path)
    path = secrets_file(estate, tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert set(first["handsets"]) == {p.extension for p in estate.staff}
    assert ensure_secrets(estate, tmp_path) == first
    assert len(set(first["handsets"].values())) == len(estate.staff)


def test_pbx_routing_rows_follow_the_estate():
    from datetime import date

    from tsunagu.pbxdata import STATE_TABLES, TABLES, data_digest, data_sql, rows, schema_sql

    estate = load_estate(TINY)
    data = rows(estate, date(2026, 11, 22))
    assert set(data) == set(TABLES)
    assert all(len(r) == len(TABLES[t]) for t, rs in data.items() for r in rs)
    members = [(g, pos, ext) for g, pos, ext, _, _ in data["tsunagu_hunt_member"] if g == "soumu"]
    assert members == [("soumu", 1, "2002"), ("soumu", 2, "2003")]
    assert ("soumu", 1, "group", "shimin") in data["tsunagu_overflow"]
    assert ("default", "2026-05-06", "national holiday (振替休日)") in data["tsunagu_closed_day"]
    passwords = {p.extension: "pw\t" + p.id for p in estate.staff}
    sql = data_sql(estate, passwords, date(2026, 11, 22))
    assert sql == data_sql(estate, passwords, date(2026, 11, 22))
    assert "2002\tshiken.tsunagu.test\tpw\\ts2\n" in sql
    assert len(data_digest(sql)) == 64
    assert schema_sql().count("CREATE TABLE IF NOT EXISTS") == len(TABLES) + len(STATE_TABLES) + 1
