"""Netlink work for the lab: namespaces, veth pairs, addresses, routes and qdiscs, via pyroute2.

Every function here either only reads, or acts inside a named namespace; nothing in this
module changes the root namespace. Each `ensure_*` returns a list of human-readable
changes it made (empty when the thing already was as asked), which is how `lab up`
knows whether a second run changed anything.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg.sched_netem import get_parameters as netem_parameters

NETNS_RUN_DIR = "/run/netns"
IFF_UP = 0x1
TC_H_ROOT = 0xFFFFFFFF
ROOT_HANDLE = 0x10000  # 1:
TBF_UNDER_NETEM_HANDLE = 0x100000  # 10:, child of netem's class 1:1
RTPROT_KERNEL = 2
RT_TABLE_MAIN = 254
U32_MAX = 2**32 - 1


class NetemUnavailable(RuntimeError):
    """The kernel has no sch_netem (the qdisc kind is unknown), so delay and loss cannot be emulated."""


@dataclass(frozen=True)
class Shaping:
    """One direction of a WAN link: netem's delay/jitter/loss, then a rate limit."""

    delay_us: int
    jitter_us: int
    loss_pct: float
    rate_bytes: int  # per second, as tbf takes it

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay_us or self.jitter_us or self.loss_pct)

    def describe(self) -> str:
        return (f"delay {self.delay_us / 1000:g}ms jitter {self.jitter_us / 1000:g}ms "
                f"loss {self.loss_pct:g}% rate {self.rate_bytes * 8 / 1e6:g}mbit")


# --- namespaces -------------------------------------------------------------------------

def list_namespaces() -> set[str]:
    return set(netns.listnetns())


def create_namespace(name: str) -> None:
    netns.create(name)


def remove_namespace(name: str) -> None:
    netns.remove(name)


@contextmanager
def opened(name: str):
    # flags=0: pyroute2's default (O_CREAT) would silently create a namespace that a
    # read-only caller (status, down) expected to find missing.
    ipr = IPRoute(netns=name, flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def namespace_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(NETNS_RUN_DIR, name))
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def pids_by_namespace(names) -> dict[str, list[int]]:
    """Processes whose network namespace is one of `names`, found by comparing /proc/*/ns/net
    with the namespace's bind mount (what `ip netns pids` does)."""
    wanted = {}
    for name in names:
        ino = namespace_inode(name)
        if ino is not None:
            wanted[ino] = name
    out: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, or a kernel thread we may not inspect
        name = wanted.get((st.st_dev, st.st_ino))
        if name is not None:
            out[name].append(int(entry))
    return out


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").strip().decode(errors="replace")
        if cmd:
            return cmd
        with open(f"/proc/{pid}/comm") as f:
            return f"[{f.read().strip()}]"
    except OSError:
        return "?"


def stop_processes(names, grace: float = 5.0) -> list[int]:
    """SIGTERM every process in the namespaces, SIGKILL what is left after `grace` seconds."""
    me = os.getpid()

    def alive():
        return [p for pids in pids_by_namespace(names).values() for p in pids if p != me]

    victims = alive()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in alive():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive():
            break
    left = alive()
    if left:
        raise RuntimeError(f"processes survived SIGKILL in lab namespaces: {left}")
    return victims


# --- root namespace (read only) ---------------------------------------------------------

def root_conflicts(pool: ipaddress.IPv4Network) -> list[str]:
    """Addresses and routes of the root namespace that overlap the lab pool. The default
    route is skipped: it covers everything, and lab namespaces never reach it anyway."""
    found = []
    with IPRoute() as ipr:
        links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr(family=socket.AF_INET):
            net = ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            if net.overlaps(pool):
                found.append(f"address {a.get_attr('IFA_ADDRESS')}/{a['prefixlen']} on "
                             f"{links.get(a['index'], a['index'])}")
        for r in ipr.route("dump", family=socket.AF_INET, table=0):
            if r["dst_len"] == 0:
                continue
            net = ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
            if net.overlaps(pool):
                found.append(f"route {net} (table {r.get_attr('RTA_TABLE')})")
    return found


# --- links ------------------------------------------------------------------------------

def _link(ipr, ifname: str):
    idx = ipr.link_lookup(ifname=ifname)
    return ipr.get_links(idx[0])[0] if idx else None


def _kind(link) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def link_index(ipr, ifname: str) -> int | None:
    idx = ipr.link_lookup(ifname=ifname)
    return idx[0] if idx else None


def ensure_up(ipr, ns: str, ifname: str) -> list[str]:
    link = _link(ipr, ifname)
    if link["flags"] & IFF_UP:
        return []
    ipr.link("set", index=link["index"], state="up")
    return [f"{ns}: {ifname} up"]


def ensure_bridge(ipr, ns: str, ifname: str) -> list[str]:
    link = _link(ipr, ifname)
    changes = []
    if link is not None and _kind(link) != "bridge":
        ipr.link("del", index=link["index"])
        link = None
    if link is None:
        # STP off (the default) so ports forward at once; the lab WAN is a single segment.
        ipr.link("add", ifname=ifname, kind="bridge")
        changes.append(f"{ns}: bridge {ifname} created")
    return changes + ensure_up(ipr, ns, ifname)


def ensure_veth(ipr_a, ns_a: str, if_a: str, ipr_b, ns_b: str, if_b: str) -> list[str]:
    """A veth pair with one end in each namespace; a lone or mismatched end is replaced."""
    a, b = _link(ipr_a, if_a), _link(ipr_b, if_b)
    paired = (a is not None and b is not None and _kind(a) == "veth" and _kind(b) == "veth"
              and a.get_attr("IFLA_LINK") == b["index"] and b.get_attr("IFLA_LINK") == a["index"])
    if paired:
        return []
    changes = []
    for ipr, ns, link in ((ipr_a, ns_a, a), (ipr_b, ns_b, b)):
        if link is not None:
            ipr.link("del", index=link["index"])
            changes.append(f"{ns}: removed stale {link.get_attr('IFLA_IFNAME')}")
    # Created from inside ns_a with the peer placed straight into ns_b: no end ever
    # exists in the root namespace, not even for a moment.
    ipr_a.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
    changes.append(f"veth {ns_a}/{if_a} <-> {ns_b}/{if_b} created")
    return changes


def ensure_master(ipr, ns: str, ifname: str, master: str) -> list[str]:
    link, br = _link(ipr, ifname), link_index(ipr, master)
    if link.get_attr("IFLA_MASTER") == br:
        return []
    ipr.link("set", index=link["index"], master=br)
    return [f"{ns}: {ifname} joined {master}"]


def ensure_addresses(ipr, ns: str, ifname: str, wanted: list[ipaddress.IPv4Interface]) -> list[str]:
    idx = link_index(ipr, ifname)
    have = {ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in ipr.get_addr(index=idx, family=socket.AF_INET)}
    changes = []
    for extra in have - set(wanted):
        ipr.addr("del", index=idx, address=str(extra.ip), prefixlen=extra.network.prefixlen)
        changes.append(f"{ns}: {ifname} dropped {extra}")
    for missing in [w for w in wanted if w not in have]:
        ipr.addr("add", index=idx, address=str(missing.ip), prefixlen=missing.network.prefixlen)
        changes.append(f"{ns}: {ifname} {missing}")
    return changes


def ensure_lab_routes_only(ipr, ns: str, pool: ipaddress.IPv4Network) -> list[str]:
    """Drop any main-table route that leads outside the pool (a default route above all):
    a lab address must never be reachable through a way out of the lab."""
    changes = []
    for r in ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN):
        dst = r.get_attr("RTA_DST") or "0.0.0.0"
        net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
        if r["dst_len"] > 0 and net.subnet_of(pool):
            continue
        _delete_route(ipr, r, socket.AF_INET)
        changes.append(f"{ns}: removed route {net}")
    for r in ipr.route("dump", family=socket.AF_INET6, table=RT_TABLE_MAIN):
        if r["dst_len"] == 0:
            _delete_route(ipr, r, socket.AF_INET6)
            changes.append(f"{ns}: removed IPv6 default route")
    return changes


def _delete_route(ipr, r, family: int) -> None:
    # The kernel finds a route to delete only by its full key: pyroute2 would otherwise
    # send scope "universe" and miss link-scope routes such as `default dev X`.
    spec = {"family": family, "table": RT_TABLE_MAIN, "dst_len": r["dst_len"], "tos": r["tos"],
            "scope": r["scope"]}
    for attr, key in (("RTA_DST", "dst"), ("RTA_OIF", "oif"), ("RTA_GATEWAY", "gateway"),
                      ("RTA_PRIORITY", "priority")):
        value = r.get_attr(attr)
        if value is not None:
            spec[key] = value
    ipr.route("del", **spec)


def routes(ipr) -> list[str]:
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for r in ipr.route("dump", family=family, table=RT_TABLE_MAIN):
            dst = r.get_attr("RTA_DST") or ("default" if r["dst_len"] == 0 else "?")
            out.append(dst if r["dst_len"] == 0 else f"{dst}/{r['dst_len']}")
    return out


def addresses(ipr) -> dict[str, list[str]]:
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    out: dict[str, list[str]] = {}
    for a in ipr.get_addr(family=socket.AF_INET):
        out.setdefault(names.get(a["index"], "?"), []).append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
    return out


# --- qdiscs -----------------------------------------------------------------------------

def tbf_parameters(rate_bytes: int) -> dict:
    # A bucket of 4 ms at line rate (at least 16 KiB): enough that a 1000 HZ timer never
    # starves the link, small enough that bursts stay short. 50 ms of queue at most, as a
    # congested access link would hold.
    return {"rate": min(rate_bytes, U32_MAX), "burst": max(16384, rate_bytes // 250), "latency": 50_000}


def _qdiscs(ipr, index: int) -> list:
    return [q for q in ipr.tc("dump", index=index) if q["index"] == index]


def _matches(qdiscs, shaping: Shaping, with_netem: bool) -> bool:
    by_parent = {q["parent"]: q for q in qdiscs}
    if with_netem:
        root, tbf = by_parent.get(TC_H_ROOT), by_parent.get(ROOT_HANDLE + 1)
        if root is None or root.get_attr("TCA_KIND") != "netem" or root["handle"] != ROOT_HANDLE:
            return False
        want = netem_parameters({"delay": shaping.delay_us, "jitter": shaping.jitter_us,
                                 "loss": shaping.loss_pct})
        got = root.get_attr("TCA_OPTIONS")
        if any(abs(int(got[k]) - int(want[k])) > 1 for k in ("delay", "jitter", "loss")):
            return False
    else:
        tbf = by_parent.get(TC_H_ROOT)
        if tbf is None or tbf["handle"] != ROOT_HANDLE:
            return False
    if tbf is None or tbf.get_attr("TCA_KIND") != "tbf":
        return False
    parms = tbf.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")
    return parms["rate"] == tbf_parameters(shaping.rate_bytes)["rate"]


def ensure_shaping(ipr, ns: str, ifname: str, shaping: Shaping, netem_ok: bool) -> list[str]:
    """netem (delay, jitter, loss) at the root with tbf (rate) beneath it; when the kernel
    has no netem, tbf alone at the root. Raises NetemUnavailable the first time netem is
    refused so the caller can record it and carry on without."""
    idx = link_index(ipr, ifname)
    with_netem = netem_ok and shaping.needs_netem
    if _matches(_qdiscs(ipr, idx), shaping, with_netem):
        return []
    try:
        ipr.tc("del", index=idx, parent=TC_H_ROOT)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.EINVAL):
            raise
    if with_netem:
        try:
            ipr.tc("add", "netem", idx, handle=ROOT_HANDLE, delay=shaping.delay_us,
                   jitter=shaping.jitter_us, loss=shaping.loss_pct)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:  # "Specified qdisc kind is unknown"
                raise NetemUnavailable(str(exc)) from None
            raise
        ipr.tc("add", "tbf", idx, handle=TBF_UNDER_NETEM_HANDLE, parent=ROOT_HANDLE + 1,
               **tbf_parameters(shaping.rate_bytes))
    else:
        ipr.tc("add", "tbf", idx, handle=ROOT_HANDLE, **tbf_parameters(shaping.rate_bytes))
    if with_netem or not shaping.needs_netem:
        return [f"{ns}: {ifname} shaped: {shaping.describe()}"]
    return [(f"{ns}: {ifname} shaped: rate {shaping.rate_bytes * 8 / 1e6:g}mbit by tbf "
             f"(no netem here; delay, jitter and loss by the WAN namespace: {shaping.describe()})")]


def qdisc_summary(ipr, ifname: str) -> str:
    idx = link_index(ipr, ifname)
    if idx is None:
        return "missing"
    parts = []
    for q in sorted(_qdiscs(ipr, idx), key=lambda q: q["parent"] != TC_H_ROOT):
        kind, opts = q.get_attr("TCA_KIND"), q.get_attr("TCA_OPTIONS")
        if kind == "tbf":
            parms = opts.get_attr("TCA_TBF_PARMS")
            parts.append(f"tbf {parms['rate'] * 8 / 1e6:g}mbit")
        elif kind == "netem":
            from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec
            parts.append(f"netem delay {opts['delay'] / tick_in_usec / 1000:g}ms "
                         f"jitter {opts['jitter'] / tick_in_usec / 1000:g}ms "
                         f"loss {opts['loss'] / U32_MAX * 100:.3g}%")
        else:
            parts.append(kind)
    return " > ".join(parts) or "none"


def delete_links(ipr) -> list[str]:
    gone = []
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        if name == "lo":
            continue
        try:
            ipr.link("del", index=link["index"])
            gone.append(name)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # the peer's deletion already took it
                raise
    return gone
