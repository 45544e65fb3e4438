"""With managed data stores the playbooks leave ElastiCache and RDS alone and load the PBX data from a PBX node.

Renders the inventory of the mocked `tiny-managed` stack (as `tsunagu inventory
--from-stack-outputs` would) and the lab's inventory of the same estate, and asks
`ansible-playbook site.yml --list-hosts --list-tasks` which hosts each play runs on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tsunagu.inventory import MANAGED, dump
from tsunagu.stack_inventory import from_stack_outputs

from .infra_stacks import deployed
from .test_infra_inventory import lab_inventory

ANSIBLE = Path(__file__).resolve().parent.parent / "ansible"
BIN = Path(sys.executable).parent
SELF_RUN_ROLES = ("etcd", "postgresql", "redis", "redis_sentinel")  # Patroni is the postgresql role
PLAY = re.compile(r"^  play #\d+ \((?P<pattern>.*)\): (?P<name>.*?)\tTAGS: ")
LEADER_PLAY = "on the PostgreSQL leader"
MANAGED_PLAY = "into managed PostgreSQL"


def list_plays(inventory: dict, tmp_path: Path) -> list[dict]:
    """Each play of site.yml in order: its name, the hosts it runs on and its tasks' names."""
    (tmp_path / "hosts.yml").write_text(dump(inventory), encoding="utf-8")
    secrets = {"services": {k: f"{k}-password" for k in ("postgres_superuser", "postgres_replication",
                                                           "postgres_kamailio", "redis", "carrier_trunk")},
               "handsets": {}}
    (tmp_path / "secrets.yml").write_text(yaml.safe_dump(secrets), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), "site.yml",
                           "--list-hosts", "--list-tasks", "-e", f"tsunagu_secrets_file={tmp_path / 'secrets.yml'}"],
                          cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plays: list[dict] = []
    section = None
    for line in proc.stdout.splitlines():
        if match := PLAY.match(line):
            plays.append({"name": match["name"], "hosts": [], "tasks": []})
        elif line.startswith("    hosts ("):
            section = "hosts"
        elif line == "    tasks:":
            section = "tasks"
        elif line.startswith("      ") and plays:
            plays[-1][section].append(line.strip().split("\t")[0])
    assert plays, proc.stdout
    return plays


def role_of(task: str) -> str | None:
    return task.split(" : ")[0] if " : " in task else None


def play(plays: list[dict], fragment: str) -> dict:
    (found,) = [p for p in plays if fragment in p["name"]]
    return found


@pytest.fixture(scope="module")
def managed_inventory() -> dict:
    return from_stack_outputs(deployed("tiny-managed").outputs)


@pytest.fixture(scope="module")
def managed_plays(managed_inventory, tmp_path_factory) -> list[dict]:
    return list_plays(managed_inventory, tmp_path_factory.mktemp("managed"))


@pytest.fixture(scope="module")
def lab_plays(tmp_path_factory) -> list[dict]:
    return list_plays(lab_inventory("tiny"), tmp_path_factory.mktemp("lab"))


def test_the_stack_inventory_groups_the_managed_data_stores(managed_inventory):
    children = managed_inventory["all"]["children"]
    managed = list(children[MANAGED]["hosts"])
    assert sorted(managed) == sorted(list(children["redis"]["hosts"]) + list(children["postgresql"]["hosts"]))
    assert all(managed_inventory["all"]["hosts"][h]["tsunagu_managed"] in ("elasticache", "rds") for h in managed)
    assert children["consensus"]["hosts"] == {}  # no etcd, Patroni or Sentinel to run


def test_no_play_logs_in_to_a_managed_data_store(managed_inventory, managed_plays):
    managed = set(managed_inventory["all"]["children"][MANAGED]["hosts"])
    for p in managed_plays:
        assert not managed & set(p["hosts"]), p["name"]
        if {role_of(t) for t in p["tasks"]} & set(SELF_RUN_ROLES):
            assert p["hosts"] == [], f"{p['name']} runs self-run data stores with managed ones"


def test_the_first_pbx_node_loads_the_managed_database_with_the_self_run_paths_tasks(managed_inventory,
                                                                                        managed_plays):
    first_pbx = next(iter(managed_inventory["all"]["children"]["pbx"]["hosts"]))
    loader, leader = play(managed_plays, MANAGED_PLAY), play(managed_plays, LEADER_PLAY)
    assert loader["hosts"] == [first_pbx] == ["dc-east"]
    assert leader["hosts"] == []  # no Patroni, so no leader
    assert loader["tasks"] == leader["tasks"]
    assert {role_of(t) for t in loader["tasks"]} == {"pbx_data"}
    assert "pbx_data : Create Kamailio's database and user." in loader["tasks"]
    assert set(play(managed_plays, "Run the PBX nodes")["hosts"]) == {"dc-east", "dc-west"}


def test_the_labs_plays_run_where_they_did(lab_plays):
    """Every play of the lab targets its whole group as before; the managed loader has no host."""
    inventory = lab_inventory("tiny")["all"]
    group = {name: set(members["hosts"] or {}) for name, members in inventory["children"].items()}
    assert group[MANAGED] == set()
    expected = {
        "Prepare every host": set(inventory["hosts"]),
        "Run the etcd cluster on the consensus hosts": group["consensus"],
        "Run PostgreSQL under Patroni": group["postgresql"],
        "Run Redis, the first host primary": group["redis"],
        "Run Redis Sentinel on the consensus hosts": group["consensus"],
        "Create Kamailio's database, load its tables and the estate's routing data on the PostgreSQL leader":
            set(),  # postgresql_leader: formed by the postgresql role at run time
        "Create Kamailio's database, load its tables and the estate's routing data into managed PostgreSQL": set(),
        "Publish the SIP domain (A and SRV records)": group["dns"],
        "Run the media relays": group["rtpengine"],
        "Run the PBX nodes": group["pbx"],
        "Run the carrier end of the trunks": group["carrier"],
    }
    assert {p["name"]: set(p["hosts"]) for p in lab_plays} == expected
    assert all(expected[name] for name in ("Run PostgreSQL under Patroni", "Run Redis, the first host primary",
                                           "Run Redis Sentinel on the consensus hosts", "Run the PBX nodes"))
    # Patroni is the postgresql role's; Kamailio's database is pbx_data's, on the leader.
    assert "pbx_data : Create Kamailio's database and user." in play(lab_plays, LEADER_PLAY)["tasks"]
