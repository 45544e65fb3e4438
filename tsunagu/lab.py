"""`tsunagu lab up|down|status`: the estate's hosts as network namespaces on this machine.

Shape of the lab (names for the default prefix `tsu-`):

* one namespace per plan host, `tsu-<host>` (each site, and `tsu-carrier`), with its own
  /etc/netns/<ns>/{hostname,hosts,resolv.conf}; `ip netns exec` bind-mounts those over /etc;
* the simulated WAN is a bridge `br-wan` inside its own namespace `tsu-wan`; each host has
  a veth `wan0` whose peer `w-<host>` is a port of that bridge, so the root namespace
  holds no lab interface, address, route or sysctl at any time;
* each trunk is a veth pair `t-<trunk>` between `tsu-carrier` and the trunk's site, with
  the plan's /30 addresses;
* routes: only the connected WAN /24 and trunk /30s. No default route, so nothing in the
  lab can reach (or be reached from) outside it.

WAN shaping: each host's full one-way figures (latency, jitter, loss, bandwidth) are applied
on both egress sides of its link: `wan0` inside the host (traffic leaving the site) and
`w-<host>` in `tsu-wan` (traffic arriving at the site). A packet from site A to site B
leaves A through A's link and enters B through B's link, so it sees
latency_A + latency_B one way and a round trip of 2 * (latency_A + latency_B); loss
compounds the same way. This models each site's access link to a carrier core whose own
delay is negligible, which is what `wan:` in the estate describes.

The kernel's netem does delay, jitter and loss; tbf does the rate (netem's own rate option
is unusable through pyroute2 0.9.7: the attribute does not encode). Where the kernel has no
sch_netem (this project's build machines), `wan_shaping.py` applies the same figures in the
WAN namespace by other kernel means: loss with a cls_bpf program on each bridge port, delay
and jitter by holding each forwarded packet in an NFQUEUE until a small daemon (under the
lab's supervisord) releases it; the per-site model is the same. A mechanism the kernel
lacks is reported, not faked: `lab up` warns, the state file records it, and `lab status`
shows what each link really applies and whether the delay daemon is bound.

State: `<run dir>/lab-state.json` records the namespaces and files the lab made, written
before anything is created so that `down` can clean up after an interrupted `up`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from . import supervisor
from . import wan_shaping as ws
from .model import Service
from .plan import CARRIER_HOST, Plan
from .plan import plan as make_plan

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PREFIX = "tsu-"
ETC_NETNS = Path("/etc/netns")
STATE_FILE = "lab-state.json"
WAN_NS = "wan"  # appended to the prefix
BRIDGE = "br-wan"
SITE_WAN_IF = "wan0"
IFNAMSIZ = 15  # usable characters; the kernel's 16 include the NUL
_IFNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


class LabError(RuntimeError):
    pass


# --- pure part: what the lab should look like ----------------------------------------------

def ifname(prefix: str, name: str) -> str:
    """An interface name of at most 15 characters; long or odd names keep a readable head
    and a short hash, so two long names never collide."""
    clean = _IFNAME_BAD.sub("-", name)
    if len(prefix) + len(clean) <= IFNAMSIZ and clean == name:
        return prefix + clean
    digest = hashlib.sha1(name.encode()).hexdigest()[:4]
    head = clean[: IFNAMSIZ - len(prefix) - len(digest) - 1]
    return f"{prefix}{head}-{digest}"


def shaping(wan: dict):
    from .netns import U32_MAX, Shaping

    rate = int(float(wan["bandwidth_mbit"]) * 1_000_000 / 8)
    return Shaping(
        delay_us=round(float(wan.get("latency_ms", 0)) * 1000),
        jitter_us=round(float(wan.get("jitter_ms", 0)) * 1000),
        loss_pct=float(wan.get("loss_pct", 0)),
        rate_bytes=min(rate, U32_MAX),  # tbf's 32-bit rate caps a link at ~34 Gbit/s
    )


def one_way_ms(plan: Plan, a: str, b: str) -> float:
    """The configured one-way latency from host a to host b across the lab WAN."""
    return plan.host(a).wan.get("latency_ms", 0) + plan.host(b).wan.get("latency_ms", 0)


@dataclass(frozen=True)
class WanPort:
    host: str
    ns: str
    port: str  # the bridge-side end in the WAN namespace
    address: ipaddress.IPv4Interface
    shaping: object


@dataclass(frozen=True)
class TrunkVeth:
    trunk: str
    ifname: str  # the same name at both ends; each end lives in its own namespace
    carrier_ns: str
    site_ns: str
    carrier_address: ipaddress.IPv4Interface
    site_address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class Layout:
    prefix: str
    pool: ipaddress.IPv4Network
    wan_ns: str
    hosts: dict[str, str]  # namespace -> host name
    ports: tuple[WanPort, ...]
    trunks: tuple[TrunkVeth, ...]
    etc: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> file -> text

    @property
    def namespaces(self) -> list[str]:
        return [self.wan_ns, *self.hosts]


def etc_files(plan: Plan, host_name: str) -> dict[str, str]:
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{h.address}\t{h.name}.{plan.domain} {h.name}" for h in plan.hosts]
    dns = [h.address for h in plan.running(Service.DNS)]
    resolv = ["# the estate's own DNS servers; the lab has no way to any other",
              f"search {plan.domain}"]
    resolv += [f"nameserver {a}" for a in dns] or ["nameserver 127.0.0.1"]
    resolv.append("options timeout:1 attempts:2")
    return {"hostname": host_name + "\n", "hosts": "\n".join(hosts) + "\n",
            "resolv.conf": "\n".join(resolv) + "\n"}


def layout(plan: Plan, prefix: str = DEFAULT_PREFIX) -> Layout:
    def ns(host: str) -> str:
        return f"{prefix}{host}"

    if any(h.name == WAN_NS for h in plan.hosts):
        raise LabError(f"a host named {WAN_NS!r} would share its namespace with the WAN bridge "
                       f"({prefix}{WAN_NS}); rename that site")
    for h in plan.hosts:
        if "/" in h.name or h.name in (".", ".."):
            raise LabError(f"host name {h.name!r} cannot name a namespace")
    prefixlen = plan.wan_subnet.prefixlen
    ports, ports_seen = [], {}
    for h in plan.hosts:
        port = ifname("w-", h.name)
        if port in ports_seen:
            raise LabError(f"hosts {ports_seen[port]!r} and {h.name!r} map to one interface name {port}")
        ports_seen[port] = h.name
        ports.append(WanPort(h.name, ns(h.name), port,
                             ipaddress.IPv4Interface(f"{h.address}/{prefixlen}"), shaping(h.wan)))
    trunks = [
        TrunkVeth(t.trunk, ifname("t-", t.trunk), ns(CARRIER_HOST), ns(t.site),
                  ipaddress.IPv4Interface(f"{t.carrier_address}/{t.subnet.prefixlen}"),
                  ipaddress.IPv4Interface(f"{t.site_address}/{t.subnet.prefixlen}"))
        for t in plan.trunk_links
    ]
    return Layout(prefix, plan.pool, f"{prefix}{WAN_NS}", {ns(h.name): h.name for h in plan.hosts},
                  tuple(ports), tuple(trunks), {ns(h.name): etc_files(plan, h.name) for h in plan.hosts})


def default_run_dir(sip_domain: str) -> Path:
    return REPO / "runs" / sip_domain.split(".")[0]


# --- state ------------------------------------------------------------------------------

def _read_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def _write_state(run_dir: Path, state: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(run_dir / STATE_FILE)


# --- actions ------------------------------------------------------------------------------

def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.write_text(text)
    return True


def _netem_available(ipr) -> bool:
    """Try netem on the WAN namespace's loopback (nothing runs there) and take it away again."""
    from pyroute2.netlink.exceptions import NetlinkError

    from . import netns as nl

    lo = nl.link_index(ipr, "lo")
    try:
        ipr.tc("add", "netem", lo, handle=nl.ROOT_HANDLE, delay=1000)
    except NetlinkError:
        return False
    ipr.tc("del", index=lo, parent=nl.TC_H_ROOT)
    return True


def up(lay: Layout, run_dir: Path, estate_file: str, plan: Plan | None = None) -> list[str]:
    """Make the lab match the layout; returns what changed (empty: nothing to do)."""
    from . import netns as nl

    conflicts = nl.root_conflicts(lay.pool)
    if conflicts:
        raise LabError(f"lab.address_pool {lay.pool} overlaps the root namespace: " + "; ".join(conflicts)
                       + ". Choose another pool in the estate's lab.address_pool.")
    state = _read_state(run_dir) or {}
    if state.get("prefix", lay.prefix) != lay.prefix:
        raise LabError(f"{run_dir} holds a lab with prefix {state['prefix']!r}; take it down first")
    owned = set(state.get("namespaces", []))
    existing = nl.list_namespaces()
    foreign = [n for n in lay.namespaces if n in existing and n not in owned]
    if foreign:
        raise LabError(f"namespaces {', '.join(foreign)} exist but {run_dir} did not make them "
                       "(another lab's run dir?); take that lab down, or pick another --prefix")
    changes: list[str] = []
    stale = sorted(owned - set(lay.namespaces))
    if stale:  # hosts the estate no longer has
        changes += _remove(stale, state)
    state.update({
        "version": 1, "prefix": lay.prefix, "estate": str(Path(estate_file).resolve()),
        "pool": str(lay.pool),
        # Intent first: an interrupted `up` still leaves `down` knowing what to remove.
        "namespaces": list(lay.namespaces),
        "created_etc_netns": state.get("created_etc_netns", not ETC_NETNS.exists()),
    })
    _write_state(run_dir, state)

    for name in lay.namespaces:
        if name not in existing:
            nl.create_namespace(name)
            changes.append(f"namespace {name} created")
    for name, files in lay.etc.items():
        d = ETC_NETNS / name
        d.mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            if _write_if_changed(d / file, text):
                changes.append(f"{d / file} written")

    with ExitStack() as stack:
        ipr = {name: stack.enter_context(nl.opened(name)) for name in lay.namespaces}
        for name in lay.namespaces:
            changes += nl.ensure_up(ipr[name], name, "lo")
        w = lay.wan_ns
        netem_ok = _netem_available(ipr[w])
        loss_how = "netem" if netem_ok else "cls_bpf"
        changes += nl.ensure_bridge(ipr[w], w, BRIDGE)
        for p in lay.ports:
            changes += nl.ensure_veth(ipr[p.ns], p.ns, SITE_WAN_IF, ipr[w], w, p.port)
            changes += nl.ensure_master(ipr[w], w, p.port, BRIDGE)
            changes += nl.ensure_addresses(ipr[p.ns], p.ns, SITE_WAN_IF, [p.address])
            changes += nl.ensure_up(ipr[p.ns], p.ns, SITE_WAN_IF)
            changes += nl.ensure_up(ipr[w], w, p.port)
            changes += nl.ensure_shaping(ipr[p.ns], p.ns, SITE_WAN_IF, p.shaping, netem_ok)
            changes += nl.ensure_shaping(ipr[w], w, p.port, p.shaping, netem_ok)
            if not netem_ok and not loss_how.startswith("unavailable"):
                try:
                    changes += ws.ensure_loss(ipr[w], w, p.port, p.shaping.loss_pct)
                except ws.Unavailable as exc:
                    loss_how = f"unavailable: {exc}"
        for t in lay.trunks:
            changes += nl.ensure_veth(ipr[t.carrier_ns], t.carrier_ns, t.ifname, ipr[t.site_ns], t.site_ns, t.ifname)
            for ns_, addr in ((t.carrier_ns, t.carrier_address), (t.site_ns, t.site_address)):
                changes += nl.ensure_addresses(ipr[ns_], ns_, t.ifname, [addr])
                changes += nl.ensure_up(ipr[ns_], ns_, t.ifname)
        for name in lay.hosts:
            changes += nl.ensure_lab_routes_only(ipr[name], name, lay.pool)

    state.pop("netem", None)
    state["etc_dirs"] = [str(ETC_NETNS / n) for n in lay.etc]
    _write_state(run_dir, state)
    if plan is not None:
        from .inventory import dump, from_plan

        inventory = from_plan(plan, estate_file, str(run_dir), lay.prefix)
        if _write_if_changed(run_dir / "inventory.yml", dump(inventory)):
            changes.append(f"{run_dir / 'inventory.yml'} written")
    changes += supervisor.ensure_running(run_dir, lay.wan_ns)
    delay_how = "netem" if netem_ok else "nfqueue"
    if not netem_ok:
        try:
            delay_how, more = _ensure_delay(lay, run_dir)
            changes += more
        except ws.Unavailable as exc:
            delay_how = f"unavailable: {exc}"
    state["wan_shaping"] = {"rate": "tbf", "delay": delay_how, "loss": loss_how,
                            "netem": "applied" if netem_ok else "unavailable: the kernel has no sch_netem"}
    _write_state(run_dir, state)
    return changes


def _ensure_delay(lay: Layout, run_dir: Path) -> tuple[str, list[str]]:
    """Delay and jitter without netem: the WAN namespace's NFQUEUE rule and its daemon."""
    ports = {p.port: (p.shaping.delay_us, p.shaping.jitter_us) for p in lay.ports}
    if not any(d or j for d, j in ports.values()):
        return "none wanted", ws.remove_delay_daemon(run_dir) + ws.remove_queue_rule(lay.wan_ns)
    changes = ws.ensure_delay_daemon(run_dir, ports)
    changes += ws.ensure_queue_rule(lay.wan_ns)
    return "nfqueue", changes


def _remove(names: list[str], state: dict) -> list[str]:
    from pyroute2.netlink.exceptions import NetlinkError

    from . import netns as nl

    changes = []
    existing = nl.list_namespaces()
    present = [n for n in names if n in existing]
    for pid in nl.stop_processes(present):
        changes.append(f"stopped process {pid}")
    for name in present:
        try:
            with nl.opened(name) as ipr:
                changes += [f"{name}: {link} removed" for link in nl.delete_links(ipr)]
        except (OSError, NetlinkError):
            pass  # a namespace mid-removal; removing its mount below is what matters
        nl.remove_namespace(name)
        changes.append(f"namespace {name} removed")
    for name in names:
        d = ETC_NETNS / name
        if d.exists():
            shutil.rmtree(d)
            changes.append(f"{d} removed")
    if state.get("created_etc_netns") and ETC_NETNS.exists() and not any(ETC_NETNS.iterdir()):
        ETC_NETNS.rmdir()
        changes.append(f"{ETC_NETNS} removed")
    return changes


def down(run_dir: Path, fallback: Layout | None) -> list[str]:
    """Remove what the run dir's state records (or, with no state, what the layout names)."""
    changes = supervisor.shutdown(run_dir)  # services first, gracefully, before any signal
    state = _read_state(run_dir)
    if state is not None:
        names = list(state.get("namespaces", []))
    elif fallback is not None:
        names = fallback.namespaces
        state = {"prefix": fallback.prefix}
    else:
        return changes
    changes += _remove(names, state)
    state.update({"namespaces": [], "etc_dirs": []})
    _write_state(run_dir, state)
    return changes


def status(run_dir: Path, lay: Layout | None) -> str:
    from . import netns as nl

    state = _read_state(run_dir) or {}
    names = state.get("namespaces") or (lay.namespaces if lay else [])
    existing = nl.list_namespaces()
    if not any(n in existing for n in names):
        return f"lab is down (run dir {run_dir})"
    hosts = lay.hosts if lay else {}
    shaped = {p.ns: p.port for p in lay.ports} if lay else {}
    pids = nl.pids_by_namespace([n for n in names if n in existing])
    how = state.get("wan_shaping", {})
    lines = [f"lab {state.get('estate', '?')}  run dir {run_dir}  pool {state.get('pool', '?')}",
             f"WAN shaping: rate {how.get('rate', '?')}; delay and jitter {how.get('delay', '?')}; "
             f"loss {how.get('loss', '?')}"]
    if how.get("delay") == "nfqueue":
        lines.append(f"    {ws.delay_status(run_dir)}")
    lines.append("")
    delays = ws.port_delays(run_dir) if how.get("delay") == "nfqueue" else {}
    for name in names:
        label = f"site {hosts[name]}" if name in hosts and hosts[name] != CARRIER_HOST else (
            "carrier" if name in hosts else "WAN bridge")
        if name not in existing:
            lines.append(f"{name:<20} {label:<18} MISSING")
            continue
        with nl.opened(name) as ipr:
            addrs = nl.addresses(ipr)
            lines.append(f"{name:<20} {label}")
            for dev, a in sorted(addrs.items()):
                if dev != "lo":
                    lines.append(f"    {dev:<15} {', '.join(a)}")
            lines.append(f"    routes          {', '.join(nl.routes(ipr)) or 'none'}")
            if name in shaped:
                lines.append(f"    egress          {nl.qdisc_summary(ipr, SITE_WAN_IF)}")
            if name == (lay.wan_ns if lay else None):
                for p in lay.ports:
                    lines.append(f"    {p.port:<15} egress {nl.qdisc_summary(ipr, p.port)}")
                    extra = []
                    if p.port in delays:
                        d, j = delays[p.port]
                        extra.append(f"delay {d:g}ms jitter {j:g}ms each way (nfqueue)")
                    loss = ws.loss_summary(ipr, p.port)
                    if loss:
                        extra.append(loss)
                    if extra:
                        lines.append(f"    {'':<15} {'; '.join(extra)}")
        for pid in pids.get(name, []):
            lines.append(f"    pid {pid:<10} {nl.process_name(pid)[:100]}")
    return "\n".join(lines)


# --- command ------------------------------------------------------------------------------

def _context(args):
    """(run dir, layout or None, plan or None): the layout comes from the estate when it loads."""
    from .cli import load_or_exit

    run_dir = Path(args.run_dir) if args.run_dir else None
    state = _read_state(run_dir) if run_dir is not None else None
    if args.estate is None:
        if state is not None and state.get("estate") and Path(state["estate"]).exists():
            args.estate = state["estate"]
        else:
            from .cli import DEFAULT_ESTATE

            args.estate = str(DEFAULT_ESTATE)
    plan = make_plan(load_or_exit(args.estate))
    run_dir = run_dir or default_run_dir(plan.domain)
    state = _read_state(run_dir)
    prefix = args.prefix
    if args.action != "up" and state is not None and prefix == DEFAULT_PREFIX:
        prefix = state.get("prefix", prefix)  # down/status follow whatever up made
    return run_dir, layout(plan, prefix), plan


def _lab(args) -> int:
    if os.geteuid() != 0:
        print("tsunagu lab: needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    try:
        run_dir, lay, plan = _context(args)
        if args.action == "up":
            changes = up(lay, run_dir, args.estate, plan)
            for c in changes:
                print(c)
            print(f"lab up: {len(changes)} change{'s' * (len(changes) != 1)}" if changes else
                  f"lab up: no change ({len(lay.hosts)} hosts, {len(lay.trunks)} trunk links already as planned)")
            how = (_read_state(run_dir) or {}).get("wan_shaping", {})
            for what in ("delay", "loss"):
                if str(how.get(what, "")).startswith("unavailable"):
                    print(f"WARNING: WAN {what} is NOT emulated: {how[what]}", file=sys.stderr)
            if how.get("delay") == "nfqueue":
                print("WAN: no sch_netem in this kernel; delay and jitter by NFQUEUE "
                      f"({ws.PROGRAM}), loss by cls_bpf, rate by tbf")
            print(f"state: {run_dir / STATE_FILE}")
        elif args.action == "down":
            changes = down(run_dir, lay)
            for c in changes:
                print(c)
            print("lab down: done" if changes else "lab down: nothing to remove")
        else:
            print(status(run_dir, lay))
    except LabError as exc:
        print(f"tsunagu lab: {exc}", file=sys.stderr)
        return 1
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("lab", help="the estate as network namespaces on this machine (up, down, status)",
                       description="Build, remove or show the rehearsal lab: one network namespace per "
                       "plan host, a shaped WAN bridge between them, veth trunk links to the carrier.")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("estate", nargs="?", default=None,
                   help="estate YAML file (default: the run dir's estate, else examples/small-city.yaml)")
    p.add_argument("--run-dir", help="where the lab's state lives (default: runs/<first label of sip_domain>/)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help=f"namespace name prefix (default {DEFAULT_PREFIX!r}); lets tests run a lab "
                   "beside the real one")
    p.set_defaults(func=_lab)
