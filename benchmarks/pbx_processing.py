"""PBX processing time per INVITE and the call rate where success drops, with SIPp.

Drives one PBX node of a deployed lab (`tsunagu lab up` + `tsunagu deploy`) with SIPp:
a SIPp UAS registers as a member of the representative group (daihyo) from the city
hall's namespace, a SIPp UAC in the carrier's namespace calls the representative number
on the node's trunk at rising rates. dumpcap in the node's namespace records every SIP
packet; the PBX processing time of a call is the time from its INVITE arriving on the
trunk interface to the first INVITE branch leaving towards the handset (same Call-ID),
both packet timestamps taken on the node itself.

For each rate it prints p50/p95/p99 of that time, the share of calls SIPp completed, and
the CPU the node's Kamailio processes used (percent of one core). For the run, the group
is made not to skip busy members (one SIPp UAS takes every call; the setting is data in
PostgreSQL, restored afterwards), and the other member (2000) must not be registered.
Between runs, wait 35 s: a failed run leaves transactions ringing for up to 30 s.

    .venv/bin/python benchmarks/pbx_processing.py --run-dir /tmp/tp/run --secrets-dir /tmp/tp/secrets \
        --rates 10,25,50,100,200 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


GROUP, MEMBER, NUMBER = "daihyo", "2001", "0736772511"
UAS_PORT, UAC_PORT = 5090, 5091


# SIPp's built-in uac sends ACK and BYE straight to the remote address; the PBX only accepts
# in-dialog requests along the Record-Route, so this scenario keeps the route set.
UAC_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="tsunagu trunk call">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:0312345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:0312345678@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:0312345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:0312345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""

# The handset: 180, then 200 with the Record-Route echoed (SIPp's built-in uas leaves it out).
UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="tsunagu handset">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:2001@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:2001@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


def ns_run(ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, **kw)


class Lab:
    def __init__(self, run_dir: Path, secrets_dir: Path):
        self.run_dir = run_dir
        self.inv = yaml.safe_load((run_dir / "inventory.yml").read_text())["all"]
        domain = self.inv["vars"]["tsunagu_sip_domain"]
        self.domain = domain
        self.secrets = yaml.safe_load((secrets_dir / f"{domain}.yaml").read_text())

    def host(self, name):
        return self.inv["hosts"][name]

    def trunk(self, site):
        return next(t for t in self.inv["vars"]["tsunagu_trunks"] if t["site"] == site)

    def sql(self, query: str) -> str:
        hosts = ",".join(self.host(h)["tsunagu_address"] for h in self.inv["children"]["postgresql"]["hosts"])
        url = f"postgresql://kamailio@{hosts}/kamailio?target_session_attrs=read-write"
        env = dict(os.environ, PGPASSWORD=self.secrets["services"]["postgres_kamailio"])
        return subprocess.run(["ip", "netns", "exec", self.host("dc-east")["tsunagu_netns"], "psql", "-X", "-tA",
                               url, "-c", query], env=env, capture_output=True, text=True, check=True).stdout

    def kamailio_pids(self, node: str) -> list[int]:
        cfg = f"{self.host(node)['tsunagu_root']}/etc/kamailio/kamailio.cfg"
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if "kamailio" in cmd.split(" ")[0] and cfg in cmd:
                    pids.append(int(p.name))
        return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def register_uas(lab: Lab, node_address: str, hall: str, expires: int) -> None:
    code = f"""
from tsunagu import sipprobe
class E(sipprobe.Endpoint):
    contact = property(lambda s: "<sip:{MEMBER}@{hall}:{UAS_PORT}>")
with E("{node_address}", user="{MEMBER}", domain="{lab.domain}", password="{lab.secrets['handsets'][MEMBER]}") as ep:
    print(ep.register("{node_address}", expires={expires}).status)
"""
    out = ns_run(lab.host("hall")["tsunagu_netns"], [sys.executable, "-c", code], cwd=REPO, check=True)
    assert out.stdout.strip().endswith("200"), out


def processing_times(pcap: Path, trunk_address: str, node_address: str) -> list[float]:
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip.Method == \"INVITE\"", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "sip.Call-ID"],
                         capture_output=True, text=True, check=True).stdout
    arrived, left = {}, {}
    for line in out.splitlines():
        t, src, dst, call_id = line.split("\t")
        if dst == trunk_address:
            arrived.setdefault(call_id, float(t))
        elif src == node_address:
            left.setdefault(call_id, float(t))
    return sorted((left[c] - arrived[c]) * 1000 for c in arrived if c in left)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(p * 10) - 1] if len(values) > 1 else values[0]


def run_rate(lab: Lab, node: str, rate: int, seconds: int, work: Path) -> dict:
    node_ns = lab.host(node)["tsunagu_netns"]
    node_address = lab.host(node)["tsunagu_address"]
    trunk = lab.trunk(node)
    hall = lab.host("hall")["tsunagu_address"]
    calls = rate * seconds
    pcap = work / f"rate-{rate}.pcap"
    stat = work / f"rate-{rate}.csv"
    uas = subprocess.Popen(["ip", "netns", "exec", lab.host("hall")["tsunagu_netns"], "sipp",
                            "-sf", str(work / "uas.xml"), "-i", hall, "-p", str(UAS_PORT), "-nostdin"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cap = subprocess.Popen(["ip", "netns", "exec", node_ns, "dumpcap", "-q", "-i", "any", "-f", "udp port 5060",
                            "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    pids = lab.kamailio_pids(node)
    cpu0, wall0 = cpu_seconds(pids), time.monotonic()
    uac = ns_run(lab.host("carrier")["tsunagu_netns"],
                 ["sipp", "-sf", str(work / "uac.xml"), f"{trunk['site_address']}:5060", "-s", NUMBER,
                  "-i", trunk["carrier_address"],
                  "-p", str(UAC_PORT), "-r", str(rate), "-m", str(calls), "-l", str(max(rate * 4, 10)),
                  "-d", "200", "-recv_timeout", "10000", "-nostdin", "-trace_stat", "-stf", str(stat),
                  "-fd", "1"], timeout=seconds * 4 + 60)
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(pids) - cpu0
    time.sleep(0.5)
    for p in (cap, uas):
        p.terminate()
        p.wait()
    header, *rows = [line.split(";") for line in stat.read_text().splitlines() if line.strip()]
    last = dict(zip(header, rows[-1], strict=False))
    ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
    times = processing_times(pcap, trunk["site_address"], node_address)
    return {"rate": rate, "calls": calls, "ok": ok, "failed": failed, "success": ok / calls if calls else 0,
            "measured": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "p99": pct(times, 99),
            "cpu": 100 * cpu / wall, "uac_rc": uac.returncode}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--secrets-dir", type=Path, required=True)
    ap.add_argument("--node", default="dc-east")
    ap.add_argument("--rates", default="10,25,50,100,200")
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args(argv)
    lab = Lab(args.run_dir, args.secrets_dir)
    node_address = lab.host(args.node)["tsunagu_address"]
    hall = lab.host("hall")["tsunagu_address"]
    skip_busy = lab.sql(f"SELECT skip_busy FROM tsunagu_hunt_group WHERE id = '{GROUP}'").strip()
    print(f"node {args.node}; PostgreSQL primary: "
          + lab.sql("SELECT inet_server_addr()").strip()
          + f"; load before: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    lab.sql(f"UPDATE tsunagu_hunt_group SET skip_busy = false WHERE id = '{GROUP}'")
    register_uas(lab, node_address, hall, 3600)
    try:
        print(f"{'cps':>5} {'calls':>6} {'success':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'cpu %':>6}")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "uac.xml").write_text(UAC_XML)
            (Path(tmp) / "uas.xml").write_text(UAS_XML)
            for rate in (int(r) for r in args.rates.split(",")):
                r = run_rate(lab, args.node, rate, args.seconds, Path(tmp))
                print(f"{r['rate']:>5} {r['calls']:>6} {100 * r['success']:>7.2f}% {r['p50']:>7.2f} {r['p95']:>7.2f}"
                      f" {r['p99']:>7.2f} {r['cpu']:>6.1f}   (measured {r['measured']}, failed {r['failed']},"
                      f" load {os.getloadavg()[0]:.1f})", flush=True)
                time.sleep(2)
    finally:
        lab.sql(f"UPDATE tsunagu_hunt_group SET skip_busy = {skip_busy == 't'} WHERE id = '{GROUP}'")
        lab.sql("DELETE FROM tsunagu_active_call")
        register_uas(lab, node_address, hall, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
