"""Generate a realistic estate for a city of a given size, deterministically.

Same profile, same bytes: the examples in `examples/` are this module's output and a
test keeps them so. Staff are people; each desk island's group phone and each
building's PA gateway are added as extra staff entries with their own device.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import names
from .model import AfterHoursAction, Device, Role, SiteKind, Strategy

MAX_STAFF = 50_000
FLOW_WIDTH = 160  # a mapping or list this short is written on one line


@dataclass(frozen=True)
class Profile:
    """What a city looks like; everything else is derived from it and the seed."""

    staff: int
    sites: int  # municipal buildings; the two PBX sites come on top
    seed: int = 1
    name: str = "みどり野市"
    name_en: str = "Midorino City"
    sip_domain: str = "midorino.tsunagu.test"
    area_code: str = "0287"
    exchange: str = "62"  # local exchange after the area code; 4 subscriber digits follow
    wards: tuple[tuple[str, str], ...] = ()  # (kanji, romaji)
    pbx_kind: SiteKind = SiteKind.CLOUD_REGION
    carriers: tuple[str, str] = ("NTT東日本", "KDDI")
    island_size: int = 10  # people per desk island, each island has one group phone
    islands_answer: bool = False  # department numbers ring island phones, not people
    managers_after_hours: bool = False  # after hours only managers' home phones ring
    disaster_staff_take_phones_home: bool = True
    pc_extensions: bool = False  # extensions are PC host numbers, scattered over the range
    branch_label: str = "支所"


PROFILES = {
    # Modelled on Kinokawa: the operator transfers to desk-island phones, only managers
    # take phones home and ring after hours, extensions reuse PC host numbers.
    "small-city": Profile(
        staff=700, sites=4, seed=2503, name="紀の郷市", name_en="Kinosato City",
        sip_domain="kinosato.tsunagu.test", area_code="0736", exchange="73",
        carriers=("NTT西日本", "KDDI"), island_size=8, islands_answer=True,
        managers_after_hours=True, disaster_staff_take_phones_home=False, pc_extensions=True,
    ),
    # Modelled on Sagamihara: 21 buildings with three ward offices, PBX in two
    # datacentres, a night-duty desk behind the switchboard after hours.
    "large-city": Profile(
        staff=8000, sites=21, seed=2508, name="相模野市", name_en="Sagamino City",
        sip_domain="sagamino.tsunagu.test", area_code="042", exchange="769",
        wards=(("緑区", "midori"), ("中央区", "chuo"), ("南区", "minami")),
        pbx_kind=SiteKind.DATACENTER, carriers=("NTT東日本", "ソフトバンク"), island_size=12,
        branch_label="まちづくりセンター",
    ),
}
GENERIC = Profile(staff=700, sites=4)

_PBX_SITES = {
    SiteKind.CLOUD_REGION: (
        ("cloud-tokyo", "クラウド東京リージョン", "ap-northeast-1a", 2.0),
        ("cloud-osaka", "クラウド大阪リージョン", "ap-northeast-3a", 9.0),
    ),
    SiteKind.DATACENTER: (
        ("dc-east", "東日本データセンター", None, 1.0),
        ("dc-west", "西日本データセンター", None, 8.0),
    ),
}
# Typical figures for a municipal closed network (LGWAN-style) link by building kind:
# (latency ms, jitter ms, loss %, minimum Mbit/s).
_WAN = {
    SiteKind.CITY_HALL: (4.0, 0.5, 0.01, 500),
    SiteKind.WARD_OFFICE: (6.0, 1.0, 0.05, 200),
    SiteKind.BRANCH: (9.0, 2.0, 0.1, 100),
    SiteKind.COMMUNITY_CENTRE: (14.0, 3.0, 0.3, 50),
}
_BANDWIDTH_TIERS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
_MBIT_PER_HANDSET = 0.25  # G.711 with headroom at a busy-hour share of handsets on a call

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
_OFFICE_HOURS = "08:30-17:15"
_OPERATOR_SECONDS_PER_CALL = 40  # switchboard handling time, for sizing the operator desk
_CALL_MINUTES = 3.0  # average external call, for sizing trunk channels


# ---------------------------------------------------------------- city skeleton


@dataclass
class _Site:
    id: str
    name: str
    kind: SiteKind
    zone: str | None = None
    latency: float = 0.0


@dataclass
class _Dept:
    id: str
    name: str
    site: _Site
    kind: names.DepartmentKind
    ward: str | None = None  # the ward's romaji, for ward-office departments
    people: list[dict] = field(default_factory=list)
    islands: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[dict]:
        return self.people + self.islands + self.devices


def _municipal_sites(p: Profile) -> list[_Site]:
    sites = [_Site("hall", "本庁舎", SiteKind.CITY_HALL)]
    sites += [_Site(f"ward-{en}", f"{ja}役所", SiteKind.WARD_OFFICE) for ja, en in p.wards]
    rest = p.sites - len(sites)
    branches = math.ceil(rest / 2)
    for i, (ja, en) in enumerate(names.PLACES[:rest]):
        if i < branches:
            sites.append(_Site(f"branch-{en}", f"{ja}{p.branch_label}", SiteKind.BRANCH))
        else:
            sites.append(_Site(f"centre-{en}", f"{ja}公民館", SiteKind.COMMUNITY_CENTRE))
    return sites


def _pbx_sites(p: Profile) -> list[_Site]:
    return [_Site(i, n, p.pbx_kind, zone, lat) for i, n, zone, lat in _PBX_SITES[p.pbx_kind]]


def _departments(p: Profile, sites: list[_Site]) -> list[_Dept]:
    hall_count = max(6, min(len(names.CITY_HALL_DEPARTMENTS), p.staff // 28))
    hall = sites[0]
    depts = [_Dept(k.id, k.name, hall, k) for k in names.CITY_HALL_DEPARTMENTS[:hall_count]]
    wards = {en: ja for ja, en in p.wards}
    for site in sites[1:]:
        if site.kind is SiteKind.WARD_OFFICE:
            ward = site.id.removeprefix("ward-")
            depts += [_Dept(f"{ward}-{k.id}", f"{wards[ward]}{k.name}", site, k, ward)
                      for k in names.WARD_DEPARTMENTS]
        else:
            kind = names.BRANCH_DEPARTMENT if site.kind is SiteKind.BRANCH else names.COMMUNITY_CENTRE_DEPARTMENT
            depts.append(_Dept(site.id, site.name, site, kind))
    return depts


def _apportion(total: int, weights: list[float], minimum: int) -> list[int]:
    """Split `total` by weight (largest remainder), each share at least `minimum`."""
    spare = total - minimum * len(weights)
    exact = [spare * w / sum(weights) for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: spare - sum(shares)]:
        shares[i] += 1
    return [s + minimum for s in shares]


# ---------------------------------------------------------------- people and devices

_MIN_PER_DEPARTMENT = 3  # a manager and two people to answer the department number


def _operators(p: Profile) -> int:
    return max(2, math.ceil(p.staff / 1000))


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(names.FAMILY_NAMES)} {rng.choice(names.GIVEN_NAMES)}"


def _staff_people(p: Profile, rng: random.Random, depts: list[_Dept], sites: list[_Site]) -> None:
    sizes = _apportion(p.staff - _operators(p), [d.kind.weight for d in depts], _MIN_PER_DEPARTMENT)
    sizes[0] += _operators(p)  # the switchboard sits in 総務課
    number = 0
    for dept, size in zip(depts, sizes):
        managers = 1 + size // 40
        operators = _operators(p) if dept is depts[0] else 0
        for i in range(size):
            number += 1
            person = {"id": f"s{number:05d}", "name": _person_name(rng), "department": dept.id}
            if i < managers:
                person["role"] = Role.MANAGER.value
                person["takes_phone_home"] = True
            elif i < managers + operators:
                person["role"] = Role.OPERATOR.value
                person["device"] = Device.DESK_PHONE.value
            elif dept.kind.id == "bousai" and p.disaster_staff_take_phones_home:
                person["takes_phone_home"] = True
            dept.people.append(person)
    _second_postings(rng, depts, sites)


def _second_postings(rng: random.Random, depts: list[_Dept], sites: list[_Site]) -> None:
    """A few city-hall staff work at another building (e.g. welfare staff at a branch)."""
    others = sites[1:]
    if not others:
        return
    for dept in depts:
        if dept.site is not sites[0]:
            continue
        for person in dept.people:
            if "role" not in person and rng.random() < 0.015:
                person["site"] = rng.choice(others).id


def _islands_and_devices(p: Profile, depts: list[_Dept]) -> None:
    for dept in depts:
        for n in range(1, math.ceil(len(dept.people) / p.island_size) + 1):
            dept.islands.append({"id": f"isl-{dept.id}-{n}", "name": f"{dept.name} 島{n}",
                                 "department": dept.id, "device": Device.ISLAND_GROUP_PHONE.value})
    # Building paging must keep working: one PA gateway per building, owned by the
    # first department housed there.
    seen: set[str] = set()
    for dept in depts:
        if dept.site.id not in seen:
            seen.add(dept.site.id)
            dept.devices.append({"id": f"pa-{dept.site.id}", "name": f"{dept.site.name} 館内放送",
                                 "department": dept.id, "device": Device.PA_GATEWAY.value})


# ---------------------------------------------------------------- numbering


@dataclass(frozen=True)
class _Numbering:
    length: int

    @property
    def staff_range(self) -> tuple[int, int]:
        return 2 * 10 ** (self.length - 1), 9 * 10 ** (self.length - 1) - 1

    @property
    def pilot_range(self) -> tuple[int, int]:
        return 9 * 10 ** (self.length - 1), 10**self.length - 1

    def pilot(self, index: int) -> str:
        return str(self.pilot_range[0] + index)


def _extension_length(p: Profile) -> int:
    return 4 if p.staff <= 3000 else 5


def _assign_extensions(p: Profile, rng: random.Random, plan: _Numbering, depts: list[_Dept]) -> None:
    first, last = plan.staff_range
    entries = [e for d in depts for e in d.entries]
    if p.pc_extensions:
        # PC host numbers were handed out over the years, so they follow no department.
        for entry, ext in zip(entries, rng.sample(range(first, last + 1), len(entries))):
            entry["extension"] = str(ext)
        return
    step = 10 if plan.length == 4 else 100
    start = first
    for dept in depts:
        for offset, entry in enumerate(dept.entries):
            entry["extension"] = str(start + offset)
        # Each department gets a round block with room to grow by a fifth.
        start += math.ceil(len(dept.entries) * 1.2 / step) * step
    if start - 1 > last:
        raise ValueError(f"{len(entries)} extensions do not fit {plan.length}-digit blocks; use fewer staff")


def _phone(p: Profile, subscriber: int) -> str:
    return f"{p.area_code}-{p.exchange}-{subscriber:04d}"


_REPRESENTATIVE = 1111
_DEPARTMENT_BLOCK = 2000


def _assign_numbers(p: Profile, depts: list[_Dept]) -> None:
    for i, dept in enumerate(depts):
        base = _DEPARTMENT_BLOCK + 10 * (i + 1)
        dept.numbers.append(_phone(p, base))
        if dept.kind.calls >= 1.0:  # busy counters publish a second line
            dept.numbers.append(_phone(p, base + 1))


def _did_ranges(p: Profile, depts: list[_Dept], porting: str, late: list[str] | None) -> list[dict]:
    last = _DEPARTMENT_BLOCK + math.ceil((10 * (len(depts) + 1) + 1) / 100) * 100 - 1
    block = {"first": _quoted(_phone(p, _DEPARTMENT_BLOCK)), "last": _quoted(_phone(p, last)),
             "porting": porting}
    if late:
        # Porting a building's published numbers is what delayed cutovers (Seiyo).
        block["porting_exceptions"] = {_quoted(n): "planned" for n in late}
    rep_first = _REPRESENTATIVE // 100 * 100
    return [{"first": _quoted(_phone(p, rep_first)), "last": _quoted(_phone(p, rep_first + 99)),
             "porting": porting}, block]


# ---------------------------------------------------------------- hunt groups


def _after_hours(p: Profile, dept: _Dept) -> dict:
    if p.managers_after_hours or dept.kind.id == "bousai":
        return {"action": AfterHoursAction.RING_HOME_PHONES.value}
    return {"action": AfterHoursAction.ANNOUNCEMENT.value, "announcement": "heichou"}


def _schedule(dept: _Dept) -> str | None:
    if dept.site.kind is SiteKind.COMMUNITY_CENTRE:
        return "kominkan"
    if dept.kind.calls >= 1.0:
        return "madoguchi"
    return None


_SEQUENTIAL_RING_SECONDS = 15


def _members(p: Profile, dept: _Dept, strategy: Strategy, home: bool) -> list[dict]:
    workers = [e for e in dept.people if "role" not in e]
    manager = next(e for e in dept.people if e.get("role") == Role.MANAGER.value)
    pool, spare = (dept.islands, workers) if p.islands_answer else (workers, dept.islands)
    answerers = pool + spare

    def first(n: int) -> list[dict]:
        # Where the operator transfers to island phones, every island must ring.
        return answerers[:max(n, len(pool) if p.islands_answer else 0)]

    if strategy is Strategy.SEQUENTIAL:  # first priority, second priority, ... then the manager
        chain = first(3) + [manager]
        return [{"staff": e["id"], "order": i, "ring_seconds": _SEQUENTIAL_RING_SECONDS}
                for i, e in enumerate(chain, 1)]
    if strategy is Strategy.TIERED:
        front = (pool if p.islands_answer else pool[:6]) or spare[:2]
        second = [e for e in spare[:4] if e not in front]
        tiers = [(e, 1) for e in front] + [(e, 2) for e in second] + [(manager, 3)]
        return [{"staff": e["id"], "tier": t} for e, t in tiers]
    size = {Strategy.SIMULTANEOUS: 8, Strategy.ROTATION: 8, Strategy.LONGEST_IDLE: 15}[strategy]
    ringing = first(size)
    if home or strategy is Strategy.SIMULTANEOUS:
        ringing.append(manager)
    return [{"staff": e["id"]} for e in ringing]


_RING = {  # strategy: (ring limit, default ring seconds); nobody waits longer than the limit
    Strategy.SIMULTANEOUS: (30, None),
    Strategy.SEQUENTIAL: (60, None),
    Strategy.TIERED: (60, 20),
    Strategy.ROTATION: (45, 15),
    Strategy.LONGEST_IDLE: (60, 12),
}


def _overflow_target(dept: _Dept) -> list[dict]:
    """Ward departments fall back to their ward's policy desk, everything then to the switchboard."""
    steps = []
    if dept.ward and not dept.id.endswith("-kusei"):
        steps.append({"group": f"{dept.ward}-kusei"})
    return steps + [{"group": "daihyo"}]


def _department_group(p: Profile, rng: random.Random, dept: _Dept, pilot: str) -> dict:
    strategy = Strategy(dept.kind.strategy)
    after = _after_hours(p, dept)
    home = after["action"] == AfterHoursAction.RING_HOME_PHONES.value
    limit, default_ring = _RING[strategy]
    members = _members(p, dept, strategy, home)
    if strategy is Strategy.SEQUENTIAL:  # long enough for every member's turn, then overflow
        limit = max(limit, _SEQUENTIAL_RING_SECONDS * len(members))
    group = {"id": dept.id, "name": dept.name, "answers": dept.id, "pilot_extension": _quoted(pilot),
             "strategy": strategy.value, "members": members, "ring_limit_seconds": limit}
    if default_ring:
        group["default_ring_seconds"] = default_ring
    group["overflow"] = _overflow_target(dept)
    if schedule := _schedule(dept):
        group["schedule"] = schedule
    group["after_hours"] = after
    group["calls_per_hour"] = max(1, round(len(dept.people) * dept.kind.calls * rng.uniform(0.85, 1.15)))
    if dept.kind.calls >= 0.8:  # counters record every call (customer-harassment policy)
        group["recording"] = "always"
        group["answer_rate_target"] = 0.85
    return group


def _switchboard(p: Profile, depts: list[_Dept], plan: _Numbering) -> list[dict]:
    soumu = depts[0]
    operators = [e for e in soumu.people if e.get("role") == Role.OPERATOR.value]
    manager = soumu.people[0]
    daihyo = {"id": "daihyo", "name": "代表（交換台）", "answers": "representative",
              "pilot_extension": _quoted(plan.pilot(0))}
    if p.managers_after_hours:
        # Operators first, then 総務課's islands; the manager's phone goes home at night.
        tiers = [(e, 1) for e in operators] + [(e, 2) for e in soumu.islands] + [(manager, 3)]
        daihyo |= {"strategy": Strategy.TIERED.value,
                   "members": [{"staff": e["id"], "tier": t} for e, t in tiers],
                   "ring_limit_seconds": 60, "default_ring_seconds": 20,
                   "overflow": [{"announcement": "konzatsu"}],
                   "after_hours": {"action": AfterHoursAction.RING_HOME_PHONES.value}}
    else:
        daihyo |= {"strategy": Strategy.LONGEST_IDLE.value,
                   "members": [{"staff": e["id"]} for e in operators],
                   "ring_limit_seconds": 60, "overflow": [{"group": "shukuchoku"}],
                   "after_hours": {"action": AfterHoursAction.OVERFLOW.value}}
    daihyo |= {"calls_per_hour": round(p.staff * 0.05), "recording": "always", "answer_rate_target": 0.95}
    groups = [daihyo]
    if not p.managers_after_hours:
        night = [e for e in soumu.people if "role" not in e][:3]
        groups.append({"id": "shukuchoku", "name": "宿日直", "pilot_extension": _quoted(plan.pilot(1)),
                       "strategy": Strategy.SIMULTANEOUS.value,
                       "members": [{"staff": e["id"]} for e in night], "ring_limit_seconds": 60,
                       "overflow": [{"announcement": "heichou"}], "schedule": "always",
                       "calls_per_hour": max(1, round(p.staff * 0.002))})
    return groups


def _hunt_groups(p: Profile, rng: random.Random, depts: list[_Dept], plan: _Numbering) -> list[dict]:
    groups = _switchboard(p, depts, plan)
    groups += [_department_group(p, rng, d, plan.pilot(10 + i)) for i, d in enumerate(depts)]
    return groups


# ---------------------------------------------------------------- the estate document


def _site_entry(site: _Site, handsets: int, index: int) -> dict:
    if site.kind in (SiteKind.CLOUD_REGION, SiteKind.DATACENTER):
        entry = {"id": site.id, "name": site.name, "kind": site.kind.value,
                 "wan": {"latency_ms": site.latency, "jitter_ms": 0.2, "bandwidth_mbit": 10000}}
        if site.zone:
            entry["cloud_zone"] = site.zone
        return entry
    latency, jitter, loss, minimum = _WAN[site.kind]
    need = max(minimum, handsets * _MBIT_PER_HANDSET)
    bandwidth = next((t for t in _BANDWIDTH_TIERS if t >= need), _BANDWIDTH_TIERS[-1])
    return {"id": site.id, "name": site.name, "kind": site.kind.value,
            "wan": {"latency_ms": round(latency + site.latency, 1), "jitter_ms": jitter,
                    "loss_pct": loss, "bandwidth_mbit": bandwidth},
            "lan_cidr": f"10.{100 + index}.0.0/16"}


def _wan_jitter(rng: random.Random, sites: list[_Site]) -> None:
    for site in sites:
        site.latency = round(rng.uniform(0, 3), 1)  # distance from the core varies by building


def _handsets(depts: list[_Dept]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dept in depts:
        for entry in dept.entries:
            site = entry.get("site", dept.site.id)
            counts[site] = counts.get(site, 0) + 1
    return counts


def _schedules(groups: list[dict]) -> dict:
    weekdays = {d: _quoted(_OFFICE_HOURS) for d in _WEEKDAYS}
    closed = {"sat": "closed", "sun": "closed"}
    all_schedules = {
        "default": {"hours": weekdays | closed},
        # Counter departments stay open late on Thursdays.
        "madoguchi": {"hours": weekdays | {"thu": _quoted("08:30-19:00")} | closed},
        "kominkan": {"hours": {"mon": "closed"} | {d: _quoted("09:00-21:00")
                                                   for d in ("tue", "wed", "thu", "fri", "sat", "sun")}},
        "always": {"hours": {d: _quoted("00:00-24:00") for d in (*_WEEKDAYS, "sat", "sun")},
                   "national_holidays": False, "closed_days": []},
    }
    used = {"default"} | {g["schedule"] for g in groups if "schedule" in g}
    return {k: v for k, v in all_schedules.items() if k in used}


def _trunks(p: Profile, pbx: list[_Site], depts: list[_Dept], groups: list[dict]) -> list[dict]:
    erlangs = sum(g.get("calls_per_hour", 0) for g in groups) * _CALL_MINUTES / 60
    primary = max(30, math.ceil(erlangs * 1.3 / 10) * 10)  # 30% headroom over the busy hour
    late = [d.numbers[0] for d in depts if d.site.kind is SiteKind.BRANCH][-2:]
    return [
        {"id": _TRUNK_IDS[p.carriers[0]], "carrier": p.carriers[0], "site": pbx[0].id,
         "role": "primary", "channels": primary, "did_ranges": _did_ranges(p, depts, "ported", late)},
        # The second carrier carries the same numbers by forwarding, at half the capacity.
        {"id": _TRUNK_IDS[p.carriers[1]], "carrier": p.carriers[1], "site": pbx[1].id,
         "role": "secondary", "channels": max(30, primary // 20 * 10),
         "did_ranges": _did_ranges(p, depts, "forwarding", None)},
    ]


_TRUNK_IDS = {"NTT東日本": "ntt-east", "NTT西日本": "ntt-west", "KDDI": "kddi", "ソフトバンク": "softbank"}


def _caller_id(depts: list[_Dept]) -> dict:
    both = ["department", "representative"]
    rules = [{"role": Role.OPERATOR.value, "may_present": ["representative"]},
             {"role": Role.MANAGER.value, "may_present": both}]
    # Disaster contact and public relations call out under the city's main number.
    rules += [{"department": d.id, "may_present": both} for d in depts if d.id in ("bousai", "hisho")]
    return {"default": "department", "rules": rules}


def estate_document(p: Profile) -> dict:
    _check_profile(p)
    rng = random.Random(p.seed)
    municipal, pbx = _municipal_sites(p), _pbx_sites(p)
    _wan_jitter(rng, municipal)
    depts = _departments(p, municipal)
    _staff_people(p, rng, depts, municipal)
    _islands_and_devices(p, depts)
    plan = _Numbering(_extension_length(p))
    _assign_extensions(p, rng, plan, depts)
    _assign_numbers(p, depts)
    groups = _hunt_groups(p, rng, depts, plan)
    handsets = _handsets(depts)
    every = [pbx[0].id, pbx[1].id]
    return {
        "version": 1,
        "municipality": {"name": p.name, "name_en": p.name_en, "area_code": _quoted(p.area_code),
                         "representative_numbers": [_quoted(_phone(p, _REPRESENTATIVE))],
                         "sip_domain": p.sip_domain},
        "numbering": {"extension_length": plan.length, "outside_line_prefix": _quoted("0"),
                      "ranges": [{"first": _quoted(str(a)), "last": _quoted(str(b))}
                                 for a, b in (plan.staff_range, plan.pilot_range)]},
        "sites": [_site_entry(s, handsets.get(s.id, 0), i) for i, s in enumerate(pbx + municipal)],
        "placement": {service: every for service in ("pbx", "rtpengine", "redis", "postgresql", "dns")},
        "trunks": _trunks(p, pbx, depts, groups),
        "departments": [{"id": d.id, "name": d.name, "site": d.site.id,
                         "numbers": [_quoted(n) for n in d.numbers]} for d in depts],
        "staff": [_quote_extension(e) for d in depts for e in d.entries],
        "hunt_groups": groups,
        "schedules": _schedules(groups),
        "caller_id": _caller_id(depts),
        "policies": {"recording": "on_demand", "cdr_retention_years": 5},
    }


def _check_profile(p: Profile) -> None:
    most_sites = 1 + len(p.wards) + len(names.PLACES)
    if not len(p.wards) + 1 <= p.sites <= most_sites:
        raise ValueError(f"--sites must be between {len(p.wards) + 1} and {most_sites}")
    if len(p.area_code) + len(p.exchange) != 6:
        raise ValueError("area code and exchange must leave 4 subscriber digits")
    depts = len(_departments(p, _municipal_sites(p)))
    least = depts * _MIN_PER_DEPARTMENT + _operators(p)
    if not least <= p.staff <= MAX_STAFF:
        raise ValueError(f"--staff must be between {least} (for {depts} departments) and {MAX_STAFF}")


def _quote_extension(entry: dict) -> dict:
    """Staff entries with their fields in reading order and the extension quoted."""
    order = ("id", "name", "department", "site", "role", "extension", "device", "takes_phone_home")
    out = {k: entry[k] for k in order if k in entry}
    out["extension"] = _quoted(entry["extension"])
    return out


# ---------------------------------------------------------------- YAML writer
# A small writer rather than yaml.dump: one staff entry per line in flow style, numbers
# always double-quoted, and byte-identical output for the same document.


class _Quoted(str):
    """A string written in double quotes: numbers YAML must not read as integers."""


def _quoted(text: str) -> _Quoted:
    return _Quoted(text)


_PLAIN = re.compile(r"[A-Za-z\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e][^\s:#,\[\]{}&*!|>'\"%@`]*"
                    r"(?: [^\s:#,\[\]{}&*!|>'\"%@`]+)*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return format(value, "g") if isinstance(value, float) else str(value)
    text = str(value)
    if isinstance(value, _Quoted) or not _PLAIN.fullmatch(text) or text.lower() in _YAML_WORDS:
        return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    return text


def _flow(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _fits(value: object, indent: int) -> bool:
    return indent + len(_flow(value)) <= FLOW_WIDTH


def _block(value: object, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            inline = not isinstance(item, (dict, list)) or not item or (
                indent and _fits(item, indent) and not _is_table(item))
            if inline:
                yield f"{pad}{_scalar(key)}: {_flow(item)}"
            else:
                yield f"{pad}{_scalar(key)}:"
                yield from _block(item, indent + 2)
        return
    # A list of mappings is a table: one row per line when every row fits, so
    # 8,000 staff stay readable (and fast to parse); otherwise every row in block style.
    rows_fit = all(_fits(item, indent + 2) for item in value)
    for item in value:
        if not isinstance(item, dict) or rows_fit:
            yield f"{pad}- {_flow(item)}"
            continue
        lines = list(_block(item, indent + 2))
        yield f"{pad}- " + lines[0].lstrip()
        yield from lines[1:]


def _is_table(value: object) -> bool:
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def to_yaml(document: dict, command: str) -> str:
    header = [f"# Generated by `{command}`.",
              "# Do not edit: change the generator (tsunagu/generate.py, tsunagu/names.py) and rerun it."]
    body = []
    for key, value in document.items():
        body += [""] if isinstance(value, (dict, list)) else []
        body += list(_block({key: value}, 0))
    return "\n".join(header + body) + "\n"


def render(profile: Profile, command: str) -> str:
    return to_yaml(estate_document(profile), command)


def render_profile(name: str) -> str:
    """The text of a named example, exactly as `tsunagu generate --profile NAME` writes it."""
    return render(PROFILES[name], f"tsunagu generate --profile {name}")


# ---------------------------------------------------------------- command line


def _profile_from(args) -> tuple[Profile, str]:
    base = PROFILES[args.profile] if args.profile else GENERIC
    words = ["tsunagu generate"] + ([f"--profile {args.profile}"] if args.profile else [])
    overrides = {}
    for option in ("staff", "sites", "seed"):
        value = getattr(args, option)
        if value is not None:
            overrides[option] = value
            words.append(f"--{option} {value}")
    return replace(base, **overrides), " ".join(words)


def _generate(args) -> int:
    if not args.profile and args.staff is None:
        print("tsunagu generate: give --staff N (or --profile NAME)", file=sys.stderr)
        return 2
    profile, command = _profile_from(args)
    try:
        text = render(profile, command)
    except ValueError as exc:
        print(f"tsunagu generate: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({profile.staff} staff, {profile.sites} municipal sites)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_command(sub) -> None:
    p = sub.add_parser(
        "generate", help="write a realistic estate of a given size (deterministic per seed)",
        description="Write a realistic estate: Japanese staff names, municipal departments, sites, "
        "trunks, hunt groups of every strategy, schedules and policies. The same arguments always "
        "give the same bytes. --sites counts municipal buildings; two PBX sites are added.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--profile", choices=sorted(PROFILES),
                   help="a named city (the examples/ estates); other options override it")
    p.add_argument("--staff", type=int, help="number of people (island phones and PA gateways come on top)")
    p.add_argument("--sites", type=int, help=f"municipal buildings (default {GENERIC.sites})")
    p.add_argument("--seed", type=int, help=f"random seed (default {GENERIC.seed})")
    p.add_argument("--output", "-o", help="write here instead of standard output")
    p.set_defaults(func=_generate)
