"""Checks every host passes, whatever it runs."""

import pytest


@pytest.mark.every_host
def test_host_has_its_planned_address(host, me):
    assert f"inet {me['tsunagu_address']}/" in host.check_output("ip -o -4 addr show")


@pytest.mark.lab_host
def test_lab_host_has_no_route_out_of_the_lab(host):
    routes = host.check_output("ip -4 route show")
    assert "default" not in routes
    assert "default" not in host.check_output("ip -6 route show")


@pytest.mark.lab_host
def test_lab_host_resolves_through_the_estate_dns(host, members):
    nameservers = [line.split()[1] for line in host.file("/etc/resolv.conf").content_string.splitlines()
                   if line.startswith("nameserver")]
    assert nameservers == [v["tsunagu_address"] for _, v in members("dns")]


@pytest.mark.every_host
def test_srv_records_name_every_pbx_node_from_this_site(host, members, domain):
    answer = host.check_output(f"dig +short +time=2 +tries=2 SRV _sip._udp.{domain}")
    targets = sorted(line.split()[3] for line in answer.splitlines() if line.strip())
    assert targets == sorted(f"{name}.{domain}." for name, _ in members("pbx"))
    for name, hostvars in members("pbx"):
        assert host.check_output(f"dig +short +time=2 A {name}.{domain}") == hostvars["tsunagu_address"]


@pytest.mark.lab_host
def test_every_service_of_this_host_runs(host, me):
    status = host.run(f"supervisorctl -c {me['tsunagu_run_dir']}/supervisor/supervisord.conf status")
    mine = [line for line in status.stdout.splitlines() if line.startswith(f"{me['name']}-")]
    assert all(" RUNNING " in line for line in mine), "\n".join(mine)
    if me["groups"]:
        assert mine, f"{me['name']} runs {me['groups']} but the supervisor has no program for it"
