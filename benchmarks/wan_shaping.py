"""Benchmark: the lab WAN's delay, jitter and loss as measured, against the estate's figures.

    tsunagu lab up ESTATE --run-dir RUN --prefix P-
    .venv/bin/python benchmarks/wan_shaping.py --run-dir RUN [--pings 200] [--datagrams 20000]
        [--rates 1000,5000,10000] [--tcp-seconds 3]
    tsunagu lab down --run-dir RUN

Prints four tables:
1. RTT per pair of sites (`ping -i 0.02` from one site's namespace): the configured RTT
   2 * (latency_a + latency_b), the jitter bound 2 * (jitter_a + jitter_b), and the
   measured min / median / p95 / max.
2. Loss per site with `loss_pct`: numbered UDP datagrams each way between it and the
   first datacentre; configured and measured loss, with the 99.9 % binomial interval.
3. One-way delay under load: UDP at each rate for 5 s between the first two sites; the
   delay is the kernel's receive timestamp (SO_TIMESTAMPNS) minus the send time stamped
   in the datagram (one clock: same machine). Also the delay daemon's CPU (% of one core).
4. TCP bulk throughput between the first two sites.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from tsunagu import lab
from tsunagu import wan_shaping as ws
from tsunagu.estate import load_estate
from tsunagu.plan import CARRIER_HOST
from tsunagu.plan import plan as make_plan

SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def binomial_interval(n, p, level=0.999):
    """Normal approximation with continuity correction, clipped at 0: enough for a table."""
    z = 3.29 if level == 0.999 else 1.96
    sd = math.sqrt(n * p * (1 - p))
    return max(0, math.floor(n * p - z * sd - 0.5)), math.ceil(n * p + z * sd + 0.5)


def daemon_cpu_s(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rtt_table(plan, prefix, sites, pings):
    print(f"\n## RTT ({pings} pings, 20 ms apart)\n")
    print("| from | to | configured RTT | jitter bound | min | median | p95 | max | lost |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, a in enumerate(sites):
        for b in sites[i + 1:]:
            out = subprocess.run(["ip", "netns", "exec", prefix + a, "ping", "-c", str(pings), "-i", "0.02",
                                  "-W", "2", str(plan.host(b).address)], capture_output=True, text=True).stdout
            rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
            want = 2 * lab.one_way_ms(plan, a, b)
            jit = 2 * (plan.host(a).wan.get("jitter_ms", 0) + plan.host(b).wan.get("jitter_ms", 0))
            print(f"| {a} | {b} | {want:g} ms | ±{jit:g} ms | {min(rtts):.2f} | {statistics.median(rtts):.2f} | "
                  f"{pct(rtts, 0.95):.2f} | {max(rtts):.2f} | {pings - len(rtts)} |")


def udp_run(plan, prefix, src, dst, n, rate, stamp=False):
    """Send n datagrams src -> dst at `rate`/s; returns (ids received, one-way delays in ms)."""
    port = 41000 + os.getpid() % 10000
    with ws.inside(prefix + dst):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with ws.inside(prefix + src):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    addr = (str(plan.host(dst).address), port)
    rx.bind(addr)
    rx.setblocking(False)
    seen, delays = set(), []

    def drain():
        while True:
            try:
                data, anc, _, _ = rx.recvmsg(256, 64)
            except BlockingIOError:
                return
            i, sent_ns = struct.unpack_from("!IQ", data)
            seen.add(i)
            for level, kind, val in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", val[:16])
                    delays.append((sec * 1_000_000_000 + nsec - sent_ns) / 1e6)

    start = time.monotonic()
    pad = b"x" * 160  # 172-byte datagrams: a G.711 RTP packet
    for i in range(n):
        tx.sendto(struct.pack("!IQ", i, time.time_ns()) + pad, addr)
        if i % 20 == 19:
            while time.monotonic() - start < (i + 1) / rate:
                time.sleep(0.0005)
            drain()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        drain()
        time.sleep(0.01)
    rx.close()
    tx.close()
    return seen, delays


def loss_table(plan, prefix, sites, n):
    lossy = [s for s in sites if plan.host(s).wan.get("loss_pct")]
    if not lossy:
        return
    peer = next(s for s in sites if not plan.host(s).wan.get("loss_pct"))
    print(f"\n## Loss ({n} UDP datagrams each way at 5,000/s)\n")
    print("| from | to | configured loss | lost | measured loss | 99.9 % interval for the configured loss |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for s in lossy:
        for a, b in ((s, peer), (peer, s)):
            p = 1 - (1 - plan.host(a).wan.get("loss_pct", 0) / 100) * (1 - plan.host(b).wan.get("loss_pct", 0) / 100)
            seen, _ = udp_run(plan, prefix, a, b, n, 5000)
            lo, hi = binomial_interval(n, p)
            lost = n - len(seen)
            print(f"| {a} | {b} | {p * 100:.3g} % | {lost} | {lost / n * 100:.3g} % | {lo}–{hi} datagrams |")


def load_table(plan, prefix, run_dir, a, b, rates):
    pid = ws.daemon_pid(run_dir)
    want = lab.one_way_ms(plan, a, b)
    jit = plan.host(a).wan.get("jitter_ms", 0) + plan.host(b).wan.get("jitter_ms", 0)
    print(f"\n## One-way delay {a} -> {b} under load (configured {want:g} ms ± {jit:g} ms; 5 s per rate)\n")
    print("| datagrams/s | min | median | p99 | max | lost | delay daemon CPU |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rate in rates:
        n = rate * 5
        c0, t0 = daemon_cpu_s(pid) if pid else 0, time.monotonic()
        seen, d = udp_run(plan, prefix, a, b, n, rate)
        cpu = (daemon_cpu_s(pid) - c0) / (time.monotonic() - t0 - 1.0) * 100 if pid else float("nan")
        print(f"| {rate:,} | {min(d):.2f} | {statistics.median(d):.2f} | {pct(d, 0.99):.2f} | {max(d):.2f} | "
              f"{n - len(seen)} | {cpu:.0f} % |")


def tcp_table(plan, prefix, a, b, seconds):
    port = 42000 + os.getpid() % 10000
    with ws.inside(prefix + b):
        srv = socket.socket()
    with ws.inside(prefix + a):
        cli = socket.socket()
    srv.bind((str(plan.host(b).address), port))
    srv.listen(1)
    got = [0]

    def sink():
        conn, _ = srv.accept()
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            got[0] += len(chunk)
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    cli.connect((str(plan.host(b).address), port))
    buf = b"\0" * (1 << 16)
    end = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < end:
        cli.sendall(buf)
    cli.close()
    t.join()
    srv.close()
    rate = got[0] * 8 / (time.monotonic() - start) / 1e6
    bw = min(plan.host(a).wan["bandwidth_mbit"], plan.host(b).wan["bandwidth_mbit"])
    print(f"\n## TCP bulk {a} -> {b}: {rate:.0f} Mbit/s over {seconds} s "
          f"(link {bw:g} Mbit/s, RTT {2 * lab.one_way_ms(plan, a, b):g} ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--datagrams", type=int, default=20000)
    ap.add_argument("--rates", default="1000,5000,10000")
    ap.add_argument("--tcp-seconds", type=float, default=3)
    args = ap.parse_args()
    run_dir = Path(args.run_dir).resolve()
    state = json.loads((run_dir / lab.STATE_FILE).read_text())
    plan = make_plan(load_estate(state["estate"]))
    prefix = state["prefix"]
    sites = [h.name for h in plan.hosts if h.name != CARRIER_HOST]
    print(f"# WAN shaping of {state['estate']}: {json.dumps(state.get('wan_shaping'))}")
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    rtt_table(plan, prefix, sites, args.pings)
    loss_table(plan, prefix, sites, args.datagrams)
    load_table(plan, prefix, run_dir, sites[0], sites[1], [int(r) for r in args.rates.split(",")])
    tcp_table(plan, prefix, sites[0], sites[1], args.tcp_seconds)
    if state.get("wan_shaping", {}).get("delay") == "nfqueue":
        print(f"\n{ws.delay_status(run_dir)}")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())
