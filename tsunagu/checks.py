"""Rules that relate one part of the estate to another.

Each check yields (path, message); the loader turns them into problems with
file and line. Checks never stop at the first problem.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

from . import numbers
from .model import AfterHoursAction, Estate, Role, Service, SiteKind, Strategy
from .problems import Path

# (where, message, *places the message refers to as {0}, {1}, ...)
Found = Iterator[tuple]


def check(estate: Estate, missing_ids: frozenset[str] = frozenset()) -> Found:
    """All cross-reference problems. `missing_ids` are ids of entries that failed
    their own validation: references to them are not reported a second time."""
    yield from _unique_ids(estate)
    yield from _site_references(estate, missing_ids)
    yield from _numbering(estate)
    yield from _extensions(estate, missing_ids)
    yield from _trunks(estate)
    yield from _published_numbers(estate, missing_ids)
    yield from _hunt_groups(estate, missing_ids)
    yield from _caller_id(estate, missing_ids)


def _unique_ids(estate: Estate) -> Found:
    for section in ("sites", "trunks", "departments", "staff", "hunt_groups"):
        first_seen: dict[str, int] = {}
        for i, item in enumerate(getattr(estate, section)):
            if item.id in first_seen:
                yield (section, i, "id"), f"id {item.id!r} is already used by {{0}}", (section, first_seen[item.id])
            else:
                first_seen[item.id] = i


def _site_references(estate: Estate, missing: frozenset[str]) -> Found:
    sites = {s.id for s in estate.sites}

    def unknown(site_id: str | None) -> bool:
        return site_id is not None and site_id not in sites and site_id not in missing

    for service in Service:
        listed = estate.placement.sites_for(service)
        for i, site_id in enumerate(listed):
            if unknown(site_id):
                yield ("placement", service.value, i), f"site {site_id!r} is not defined in sites"
            elif listed.index(site_id) != i:
                yield ("placement", service.value, i), f"site {site_id!r} is listed twice"
    for i, trunk in enumerate(estate.trunks):
        if unknown(trunk.site):
            yield ("trunks", i, "site"), f"site {trunk.site!r} is not defined in sites"
    for i, dept in enumerate(estate.departments):
        if unknown(dept.site):
            yield ("departments", i, "site"), f"site {dept.site!r} is not defined in sites"
    for i, person in enumerate(estate.staff):
        if unknown(person.site):
            yield ("staff", i, "site"), f"site {person.site!r} is not defined in sites"
    for i, site in enumerate(estate.sites):
        if site.kind is SiteKind.CLOUD_REGION and not site.cloud_zone:
            yield ("sites", i, "cloud_zone"), "a cloud_region site needs its availability zone (cloud_zone)"
        if site.kind is not SiteKind.CLOUD_REGION and site.cloud_zone:
            yield ("sites", i, "cloud_zone"), f"only cloud_region sites have a cloud_zone (this is a {site.kind})"
    if len(estate.sites) < 3 and not missing:  # with entries dropped, the count is not the file's
        yield ("sites",), ("HA needs at least three sites: two for the data stores and a witness "
                           "that breaks ties for etcd and Redis Sentinel")
    if not any(t.role == "primary" for t in estate.trunks):
        yield ("trunks",), "no trunk has role 'primary'"


def _numbering(estate: Estate) -> Found:
    plan = estate.numbering
    for i, rng in enumerate(plan.ranges):
        path = ("numbering", "ranges", i)
        name = f"range {rng.first}..{rng.last}"
        if len(rng.first) != plan.extension_length:
            yield path, f"{name} has {len(rng.first)} digits, extensions have {plan.extension_length}"
        if rng.first.startswith(plan.outside_line_prefix):
            yield path, f"{name} begins with the outside-line prefix {plan.outside_line_prefix!r}"
        if int(rng.first[0]) <= 1 <= int(rng.last[0]):
            yield path, f"range {rng.first}..{rng.last} reaches into the 1XY special numbers (110, 119, ...)"
        for j in range(i):
            other = plan.ranges[j]
            if int(rng.first) <= int(other.last) and int(other.first) <= int(rng.last):
                yield path, f"range {rng.first}..{rng.last} overlaps numbering.ranges[{j}]"


def _extension_problems(estate: Estate, extension: str) -> Iterator[str]:
    plan = estate.numbering
    if len(extension) != plan.extension_length:
        yield f"extension {extension!r} has {len(extension)} digits, the numbering plan says {plan.extension_length}"
        return
    if extension.startswith(plan.outside_line_prefix):
        yield f"extension {extension!r} begins with the outside-line prefix {plan.outside_line_prefix!r}"
    if clash := numbers.special_number_clash(extension):
        yield clash
    if not any(extension in rng for rng in plan.ranges):
        yield f"extension {extension!r} is outside every range of the numbering plan"


def _extensions(estate: Estate, missing: frozenset[str]) -> Found:
    departments = {d.id for d in estate.departments}
    owners: dict[str, Path] = {}

    def claim(extension: str, path: Path) -> Found:
        for message in _extension_problems(estate, extension):
            yield path, message
        if extension in owners:
            yield path, f"duplicate extension {extension!r}, already used by {{0}}", owners[extension]
        else:
            owners[extension] = path

    for i, person in enumerate(estate.staff):
        yield from claim(person.extension, ("staff", i, "extension"))
        if person.department not in departments and person.department not in missing:
            yield ("staff", i, "department"), f"department {person.department!r} is not defined in departments"
    for i, group in enumerate(estate.hunt_groups):
        if group.pilot_extension is not None:
            yield from claim(group.pilot_extension, ("hunt_groups", i, "pilot_extension"))


def _trunks(estate: Estate) -> Found:
    for i, trunk in enumerate(estate.trunks):
        for j, rng in enumerate(trunk.did_ranges):
            for number in rng.porting_exceptions:
                if number not in rng:
                    yield (("trunks", i, "did_ranges", j, "porting_exceptions", number),
                           f"{number} is not in this range ({rng.first}..{rng.last})")


def in_trunk_range(estate: Estate, number: str) -> bool:
    return any(number in rng for trunk in estate.trunks for rng in trunk.did_ranges)


def _published_numbers(estate: Estate, missing: frozenset[str]) -> Found:
    """Representative and department numbers: carried by a trunk, used once, answered by a group."""
    seen: dict[str, Path] = {}
    answered = {g.answers for g in estate.hunt_groups if g.answers}
    published: list[tuple[Path, str, str]] = [
        (("municipality", "representative_numbers", i), n, "representative")
        for i, n in enumerate(estate.municipality.representative_numbers)
    ]
    for i, dept in enumerate(estate.departments):
        published += [(("departments", i, "numbers", j), n, dept.id) for j, n in enumerate(dept.numbers)]
    for path, number, owner in published:
        if not in_trunk_range(estate, number):
            yield path, f"DID {number} is outside every trunk range"
        if number in seen:
            yield path, f"number {number} is already published at {{0}}", seen[number]
        else:
            seen[number] = path
        if owner not in answered and owner not in missing:
            yield path, (f"number {number} rings nothing: no hunt group has answers: {owner}")


def _hunt_groups(estate: Estate, missing: frozenset[str]) -> Found:
    staff = {p.id: p for p in estate.staff}
    groups = {g.id for g in estate.hunt_groups}
    departments = {d.id: d for d in estate.departments}
    answered_by: dict[str, int] = {}
    has_operator = any(p.role is Role.OPERATOR for p in estate.staff)
    for i, group in enumerate(estate.hunt_groups):
        here: Path = ("hunt_groups", i)
        if not group.members:
            yield here + ("members",), "hunt group has no members"
        counts = Counter(m.staff for m in group.members)
        for j, member in enumerate(group.members):
            mpath = here + ("members", j)
            if member.staff not in staff and member.staff not in missing:
                yield mpath + ("staff",), f"member {member.staff!r} is not defined in staff"
            if counts[member.staff] > 1 and [m.staff for m in group.members].index(member.staff) != j:
                yield mpath + ("staff",), f"member {member.staff!r} is listed twice"
            if member.ring_seconds and member.ring_seconds > group.ring_limit_seconds:
                yield mpath + ("ring_seconds",), (
                    f"member rings {member.ring_seconds} s, longer than the group's ring limit "
                    f"of {group.ring_limit_seconds} s")
        yield from _strategy_parameters(group, here)
        if group.answers is not None:
            if group.answers != "representative" and group.answers not in departments:
                if group.answers not in missing:
                    yield here + ("answers",), (
                        f"{group.answers!r} is neither 'representative' nor a department id")
            elif group.answers != "representative" and not departments[group.answers].numbers:
                yield here + ("answers",), f"department {group.answers!r} has no numbers to answer"
            if group.answers in answered_by:
                yield (here + ("answers",), f"{group.answers!r} is already answered by {{0}}",
                       ("hunt_groups", answered_by[group.answers]))
            else:
                answered_by[group.answers] = i
        if group.schedule not in estate.schedules:
            yield here + ("schedule",), f"schedule {group.schedule!r} is not defined in schedules"
        for k, step in enumerate(group.overflow):
            spath = here + ("overflow", k)
            if step.group is not None and step.group not in groups and step.group not in missing:
                yield spath + ("group",), f"overflow group {step.group!r} is not defined in hunt_groups"
            if step.group == group.id:
                yield spath + ("group",), "a group cannot overflow to itself"
            if step.operator and not has_operator:
                yield spath + ("operator",), "overflow to the operator, but no staff has role 'operator'"
            if step.kind in ("announcement", "reject") and k != len(group.overflow) - 1:
                yield spath, f"{step.kind} ends the call, so it must be the last overflow step"
        if group.after_hours.action is AfterHoursAction.RING_HOME_PHONES and not any(
            m.staff in missing or (m.staff in staff and staff[m.staff].takes_phone_home)
            for m in group.members
        ):
            yield here + ("after_hours", "action"), (
                "ring_home_phones, but no member of this group takes a phone home")
    yield from _overflow_cycles(estate)


def _strategy_parameters(group, here: Path) -> Found:
    members = group.members
    if group.strategy is Strategy.TIERED:
        for j, member in enumerate(members):
            if member.tier is None:
                yield here + ("members", j, "tier"), "a tiered group needs a tier for every member"
        if len({m.tier for m in members if m.tier}) < 2 and members:
            yield here + ("strategy",), "a tiered group needs members in at least two tiers"
    else:
        for j, member in enumerate(members):
            if member.tier is not None:
                yield here + ("members", j, "tier"), f"tier has no meaning in a {group.strategy} group"
    ordered = group.strategy in (Strategy.SEQUENTIAL, Strategy.ROTATION)
    orders = [m.order for m in members if m.order is not None]
    for j, member in enumerate(members):
        if member.order is None:
            continue
        if not ordered:
            yield here + ("members", j, "order"), f"order has no meaning in a {group.strategy} group"
        elif orders.count(member.order) > 1:
            yield here + ("members", j, "order"), f"order {member.order} is given to more than one member"
    if ordered and orders and len(orders) != len(members):
        yield here + ("members",), "give every member an order, or none (then the listed order is used)"
    if group.strategy is Strategy.SIMULTANEOUS:
        for j, member in enumerate(members):
            if member.ring_seconds is not None:
                yield here + ("members", j, "ring_seconds"), (
                    "all members of a simultaneous group ring together for the group's ring limit; "
                    "a per-member ring time has no meaning")


def _overflow_cycles(estate: Estate) -> Found:
    edges = defaultdict(list)
    for group in estate.hunt_groups:
        edges[group.id] += [s.group for s in group.overflow if s.group]
    for i, group in enumerate(estate.hunt_groups):
        path, node, seen = [group.id], group.id, {group.id}
        while edges.get(node):
            node = edges[node][0]
            path.append(node)
            if node == group.id:
                yield ("hunt_groups", i, "overflow"), "overflow chain loops: " + " -> ".join(path)
                break
            if node in seen:
                break
            seen.add(node)


def _caller_id(estate: Estate, missing: frozenset[str]) -> Found:
    departments = {d.id for d in estate.departments}
    for i, rule in enumerate(estate.caller_id.rules):
        path = ("caller_id", "rules", i)
        if rule.department and rule.department not in departments and rule.department not in missing:
            yield path + ("department",), f"department {rule.department!r} is not defined in departments"
        for j, shown in enumerate(rule.may_present):
            if shown in ("representative", "department"):
                continue
            try:
                number = numbers.normalise(shown)
            except ValueError as exc:
                yield path + ("may_present", j), f"{exc}; or use 'representative' / 'department'"
                continue
            if not in_trunk_range(estate, number):
                yield path + ("may_present", j), f"{number} is outside every trunk range, so it cannot be presented"
