"""Checks of the data tier: etcd, PostgreSQL under Patroni, Redis with Sentinel, routing data.

Passwords come from the estate's secrets file: $TSUNAGU_SECRETS if set, else
secrets/<sip_domain>.yaml (where `tsunagu deploy` keeps them). The expected routing
rows are derived from the estate file the inventory names, with the same code the
deploy loaded them from (tsunagu.pbxdata).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ETCD_PORT = 2379
PATRONI_PORT = 8008
PG_PORT = 5432
REDIS_PORT = 6379
SENTINEL_PORT = 26379
SENTINEL_MASTER = "tsunagu"


@pytest.fixture(scope="module")
def secrets(domain) -> dict:
    from tsunagu.secrets import SECRETS_DIR

    path = Path(os.environ.get("TSUNAGU_SECRETS") or SECRETS_DIR / f"{domain}.yaml")
    return yaml.safe_load(path.read_text())


def _addresses(members, group: str) -> list[str]:
    return [v["tsunagu_address"] for _, v in members(group)]


def _patroni(host, address: str, path: str) -> tuple[int, str]:
    out = host.run(f"curl -s -m 3 -w '\\n%{{http_code}}' http://{address}:{PATRONI_PORT}{path}").stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def _psql(host, secrets, sql: str, hosts: list[str], read_write: bool = True) -> str:
    attrs = " target_session_attrs=read-write" if read_write else ""
    dsn = f"host={','.join(hosts)} port={PG_PORT} dbname=kamailio user=kamailio connect_timeout=5{attrs}"
    cmd = host.run("PGPASSWORD=%s psql -X -tA -v ON_ERROR_STOP=1 %s -c %s",
                   secrets["services"]["postgres_kamailio"], dsn, sql)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def _redis(host, secrets, address: str, *command: str, port: int = REDIS_PORT) -> str:
    auth = secrets["services"]["redis"] if port == REDIS_PORT else ""
    cmd = host.run("REDISCLI_AUTH=%s redis-cli --no-auth-warning -h %s -p %s " + " ".join(["%s"] * len(command)),
                   auth, address, str(port), *command)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout


# --- etcd ---------------------------------------------------------------------------------

@pytest.mark.consensus
def test_etcd_member_is_healthy_and_the_cluster_has_every_voter(host, me, members):
    endpoint = f"http://{me['tsunagu_address']}:{ETCD_PORT}"
    assert host.run(f"ETCDCTL_API=3 etcdctl --endpoints={endpoint} endpoint health").rc == 0
    listed = host.check_output(f"ETCDCTL_API=3 etcdctl --endpoints={endpoint} member list -w json")
    names = sorted(m["name"] for m in json.loads(listed)["members"])
    assert names == sorted(name for name, _ in members("consensus"))


# --- PostgreSQL under Patroni -------------------------------------------------------------

@pytest.mark.postgresql
def test_patroni_answers_and_postgres_listens_on_the_planned_address(host, me):
    code, _ = _patroni(host, me["tsunagu_address"], "/health")
    assert code == 200
    assert host.socket(f"tcp://{me['tsunagu_address']}:{PG_PORT}").is_listening


@pytest.mark.postgresql
def test_cluster_has_one_leader_and_every_replica_streams(host, me, secrets, members):
    code, body = _patroni(host, me["tsunagu_address"], "/cluster")
    assert code == 200
    cluster = json.loads(body)["members"]
    assert sorted(m["name"] for m in cluster) == sorted(name for name, _ in members("postgresql"))
    assert [m["role"] for m in cluster].count("leader") == 1
    assert all(m["state"] in ("running", "streaming") for m in cluster), cluster
    leader = next(m["host"] for m in cluster if m["role"] == "leader")
    streaming = int(host.check_output(
        "PGPASSWORD=%s psql -X -tA -h %s -U postgres -d postgres -c %s",
        secrets["services"]["postgres_superuser"],
        leader, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))
    assert streaming == len(cluster) - 1


@pytest.mark.postgresql
def test_kamailio_tables_exist(host, secrets, members):
    tables = set(_psql(host, secrets, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                       _addresses(members, "postgresql")).split())
    assert {"version", "subscriber", "location", "acc", "missed_calls", "dialog", "dispatcher"} <= tables


@pytest.mark.pbx
def test_pbx_node_reads_from_its_own_sites_database(host, me, secrets):
    """Kamailio's call-path reads (its "local" connections) stay at this site, whether the
    server here is the primary or a replica: no WAN round trip per query."""
    if "postgresql" not in me["groups"]:
        pytest.skip("no database server at this site")
    here = me["tsunagu_address"]
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE usename = 'kamailio' AND client_addr = '{here}'"
    assert int(_psql(host, secrets, sql, [here], read_write=False)) > 0


@pytest.mark.postgresql
def test_routing_rows_match_the_estate_on_the_leader_and_on_this_node(host, me, inventory, secrets, members):
    from tsunagu.estate import load_estate
    from tsunagu.pbxdata import TABLES, data_digest, data_sql, rows

    estate = load_estate(inventory["vars"]["tsunagu_estate_file"])
    expected_digest = data_digest(data_sql(estate, {str(k): v for k, v in secrets["handsets"].items()}))
    counts = {table: len(r) for table, r in rows(estate).items()}
    counts["subscriber"] = len(estate.staff)
    count_sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in [*TABLES, "subscriber"])
    digest_sql = "SELECT value FROM tsunagu_meta WHERE key = 'data_digest'"
    leader = _addresses(members, "postgresql")
    assert _psql(host, secrets, digest_sql, leader) == expected_digest
    loaded = dict(line.split("|") for line in _psql(host, secrets, count_sql, leader).splitlines())
    assert {t: int(n) for t, n in loaded.items()} == counts
    # This node, leader or replica, holds the same data (replication carried it).
    assert _psql(host, secrets, digest_sql, [me["tsunagu_address"]], read_write=False) == expected_digest


# --- Redis and Sentinel -------------------------------------------------------------------

@pytest.mark.redis
def test_redis_replicates(host, me, secrets, members):
    info = _redis(host, secrets, me["tsunagu_address"], "INFO", "replication")
    if "role:master" in info:
        assert f"connected_slaves:{len(members('redis')) - 1}" in info
    else:
        assert "master_link_status:up" in info
    roles = ["role:master" in _redis(host, secrets, a, "INFO", "replication")
             for a in _addresses(members, "redis")]
    assert roles.count(True) == 1, "exactly one Redis primary"


@pytest.mark.consensus
def test_sentinel_names_the_redis_primary_and_has_quorum(host, me, secrets, members):
    address = me["tsunagu_address"]
    assert _redis(host, secrets, address, "SENTINEL", "CKQUORUM", SENTINEL_MASTER,
                  port=SENTINEL_PORT).startswith("OK")
    primary, port = _redis(host, secrets, address, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER,
                           port=SENTINEL_PORT).split()
    assert primary in _addresses(members, "redis") and int(port) == REDIS_PORT
    assert "role:master" in _redis(host, secrets, primary, "INFO", "replication")
