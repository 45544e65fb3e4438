"""Text views of an estate: the one-screen summary, the plan and the numbering plan."""

from __future__ import annotations

from collections import Counter

from .model import Estate, Service
from .numbering import destinations
from .plan import Plan


def summary(estate: Estate) -> str:
    m = estate.municipality
    roles = Counter(p.role.value for p in estate.staff)
    devices = Counter(p.device.value for p in estate.staff)
    strategies = Counter(g.strategy.value for g in estate.hunt_groups)
    dids = sum(len(r.numbers()) for t in estate.trunks for r in t.did_ranges)
    lines = [
        f"{m.name} ({m.name_en or m.sip_domain}): valid estate",
        f"  sites        {len(estate.sites)} ({_counts(Counter(s.kind.value for s in estate.sites))})",
        f"  staff        {len(estate.staff)} ({_counts(roles)}); devices: {_counts(devices)}",
        f"  home phones  {sum(p.takes_phone_home for p in estate.staff)}",
        f"  departments  {len(estate.departments)}",
        f"  hunt groups  {len(estate.hunt_groups)} ({_counts(strategies)})",
        (f"  trunks       {len(estate.trunks)} ({', '.join(f'{t.id}:{t.role}' for t in estate.trunks)}),"
         f" {dids} DIDs"),
        (f"  extensions   {estate.numbering.extension_length} digits, outside line "
         f"{estate.numbering.outside_line_prefix!r}"),
    ]
    for service in Service:
        lines.append(f"  {service.value:<12} {', '.join(estate.placement.sites_for(service))}")
    return "\n".join(lines)


def plan_table(estate: Estate, plan: Plan) -> str:
    rows = [("host", "kind", "address", "services", "handsets", "wan (ms/jitter/loss%/Mbit)")]
    for h in plan.hosts:
        w = h.wan
        rows.append((h.name, h.kind, str(h.address), ",".join(s.value for s in h.services) or "-",
                     str(h.handsets),
                     f"{w['latency_ms']:g}/{w['jitter_ms']:g}/{w['loss_pct']:g}/{w['bandwidth_mbit']:g}"))
    out = [_table(rows), "", "trunk links:"]
    for link in plan.trunk_links:
        out.append(f"  {link.trunk} ({link.carrier}, {link.role}): carrier {link.carrier_address}"
                   f" <-> {link.site} {link.site_address} ({link.subnet})")
    out += ["", f"SRV records for {plan.domain}:"]
    out += [f"  {name} {prio} {weight} {port} {target}" for name, prio, weight, port, target in plan.srv_records()]
    return "\n".join(out)


def numbering_table(estate: Estate, show_unassigned: bool = False) -> str:
    plan = estate.numbering
    out = [f"extensions: {plan.extension_length} digits; outside line prefix {plan.outside_line_prefix!r}"]
    out += [f"  range {r.first}..{r.last}" for r in plan.ranges]
    used = sorted([(p.extension, f"staff {p.id} {p.name}") for p in estate.staff]
                  + [(g.pilot_extension, f"hunt group {g.id}") for g in estate.hunt_groups if g.pilot_extension])
    out.append(f"  {len(used)} extensions in use")
    dids = destinations(estate)
    shown = [d for d in dids if show_unassigned or d.published_as]
    rows = [("DID", "published as", "trunks", "porting", "destination")]
    rows += [(d.number, d.published_as or "-", ",".join(d.trunks), d.porting, d.destination) for d in shown]
    out += ["", f"DIDs: {len(dids)} on trunks, {sum(1 for d in dids if d.published_as)} published"
            + ("" if show_unassigned else " (shown; --all lists the unassigned too)")]
    return "\n".join(out) + "\n" + _table(rows)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
