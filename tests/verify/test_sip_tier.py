"""Checks of the SIP tier: DNS, rtpengine, the Kamailio PBX nodes and the carrier softswitch.

Runs on each host (see conftest.py). Expectations come from the inventory and, for the
SRV records, from the estate itself (tsunagu.plan.Plan.srv_records(), the same function
the deploy hands to Ansible), so nothing here is a second copy of the plan. The
cross-node registration test needs the handsets' passwords: it reads the secrets file
named by TSUNAGU_SECRETS (`tsunagu verify` sets it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import yaml

from tsunagu import sipprobe


@pytest.fixture(scope="session")
def srv_records(inventory):
    from tsunagu.estate import load_estate
    from tsunagu.plan import plan

    return plan(load_estate(inventory["vars"]["tsunagu_estate_file"])).srv_records()


def _trunks_here(inventory, me):
    return [t for t in inventory["vars"]["tsunagu_trunks"] if t["site"] == me["name"]]


def _kamcmd(host, me, service, command):
    ctl = f"unix:{me['tsunagu_root']}/run/{service}/kamailio_ctl"
    return host.check_output(f"kamcmd -s {ctl} {command}")


# ---------- DNS ----------

@pytest.mark.dns
def test_this_name_server_answers_the_planned_srv_records(host, me, srv_records):
    for name in sorted({r[0] for r in srv_records}):
        answer = host.check_output(f"dig +short +time=2 +tries=2 @{me['tsunagu_address']} SRV {name}")
        got = sorted(tuple(line.split()) for line in answer.splitlines() if line.strip())
        want = sorted((str(p), str(w), str(port), t) for n, p, w, port, t in srv_records if n == name)
        assert got == want


@pytest.mark.dns
def test_every_name_server_serves_the_same_zone(host, members, domain):
    serials = {host.check_output(f"dig +short +time=2 @{v['tsunagu_address']} SOA {domain}").split()[2]
               for _, v in members("dns")}
    assert len(serials) == 1, serials


@pytest.mark.dns
def test_every_host_has_an_address_record(host, me, inventory, domain):
    for name, hostvars in inventory["hosts"].items():
        answer = host.check_output(f"dig +short +time=2 @{me['tsunagu_address']} A {name}.{domain}")
        assert answer == hostvars["tsunagu_address"]


# ---------- rtpengine ----------

@pytest.mark.rtpengine
def test_rtpengine_answers_an_ng_ping(me):
    assert sipprobe.ng_ping(me["tsunagu_address"]) < 0.5


# ---------- Kamailio PBX nodes ----------

@pytest.mark.pbx
def test_kamailio_configuration_passes_its_check(host, me):
    result = host.run(f"kamailio -c -f {me['tsunagu_root']}/etc/kamailio/kamailio.cfg")
    assert result.rc == 0, result.stderr


@pytest.mark.pbx
def test_pbx_node_answers_options(me):
    reply, rtt = sipprobe.options(me["tsunagu_address"])
    assert reply.status == 200 and rtt < 0.5
    assert me["name"] in (reply.header("server") or "")


@pytest.mark.pbx
def test_pbx_node_listens_on_its_trunk_addresses(host, inventory, me):
    for trunk in _trunks_here(inventory, me):
        assert host.socket(f"udp://{trunk['site_address']}:5060").is_listening


@pytest.mark.pbx
def test_pbx_node_knows_every_other_node_over_dmq(host, me, members):
    nodes = _kamcmd(host, me, "kamailio", "dmq.list_nodes")
    for name, hostvars in members("pbx"):
        assert f"host: {hostvars['tsunagu_address']}" in nodes, name
    assert "status: disabled" not in nodes


@pytest.mark.pbx
def test_a_registration_here_is_reachable_through_every_other_node(me, members, domain):
    handsets = yaml.safe_load(Path(os.environ["TSUNAGU_SECRETS"]).read_text())["handsets"]
    (callee, callee_pw), (caller, caller_pw) = sorted(handsets.items())[:2]
    here = me["tsunagu_address"]
    with sipprobe.Endpoint(here, callee, domain, callee_pw) as phone:
        assert phone.register(here, expires=60).status == 200
        try:
            for name, other in members("pbx"):
                with sipprobe.Endpoint(other["tsunagu_address"], caller, domain, caller_pw) as asker:
                    replies: list = []
                    ask = threading.Thread(target=_ask, args=(asker, other["tsunagu_address"],
                                                              f"sip:{callee}@{domain}", replies))
                    ask.start()
                    got = phone.wait_request(3)
                    ask.join()
                result = {"r": replies[0]}
                assert got.method == "OPTIONS", name
                assert result["r"][0].status == 200, name
        finally:
            phone.register(here, expires=0)


def _ask(endpoint, node, uri, replies):
    replies.append(endpoint.request("OPTIONS", node, uri=uri))


# ---------- Carrier softswitch ----------

@pytest.mark.carrier
def test_carrier_configuration_passes_its_check(host, me):
    result = host.run(f"kamailio -c -f {me['tsunagu_root']}/etc/carrier/carrier.cfg")
    assert result.rc == 0, result.stderr


@pytest.mark.carrier
def test_carrier_answers_options_on_its_wan_and_every_trunk_address(inventory, me):
    addresses = [me["tsunagu_address"]] + [t["carrier_address"] for t in inventory["vars"]["tsunagu_trunks"]]
    for address in addresses:
        reply, _ = sipprobe.options(address)
        assert reply.status == 200, address
