"""Where each DID goes: the numbering view shared by the CLI, the PBX data and the load tests."""

from __future__ import annotations

from dataclasses import dataclass

from . import numbers
from .model import Estate


@dataclass(frozen=True)
class Did:
    number: str
    trunks: tuple[str, ...]
    porting: str
    destination: str  # 'group:<id>' or 'unassigned'
    published_as: str | None  # 'representative', 'department:<id>'


def group_numbers(estate: Estate) -> dict[str, list[str]]:
    """The published numbers each hunt group answers (groups reached only by pilot are left out)."""
    out = {}
    for group in estate.hunt_groups:
        if group.answers == "representative":
            out[group.id] = list(estate.municipality.representative_numbers)
        elif group.answers and estate.department(group.answers).numbers:
            out[group.id] = list(estate.department(group.answers).numbers)
    return out


def destinations(estate: Estate) -> list[Did]:
    group_for = {g.answers: g.id for g in estate.hunt_groups if g.answers}
    published: dict[str, str] = {n: "representative" for n in estate.municipality.representative_numbers}
    for dept in estate.departments:
        published.update({n: dept.id for n in dept.numbers})
    carried: dict[str, list[tuple[str, str]]] = {}
    for trunk in estate.trunks:
        for rng in trunk.did_ranges:
            for number in rng.numbers():
                carried.setdefault(number, []).append((trunk.id, rng.porting_of(number).value))
    out = []
    for number in sorted(carried):
        owner = published.get(number)
        group = group_for.get(owner) if owner else None
        on = carried[number]
        out.append(Did(
            number=number,
            trunks=tuple(t for t, _ in on),
            porting="/".join(dict.fromkeys(p for _, p in on)),
            destination=f"group:{group}" if group else "unassigned",
            published_as=None if owner is None else owner if owner == "representative" else f"department:{owner}",
        ))
    return out


def presentable_numbers(estate: Estate, staff_id: str) -> list[str]:
    """The numbers a person may present on outbound calls, default first.

    The handset's own mobile number is never among them: outbound calls show the
    representative or a department number (Sagamihara's requirement).
    """
    person = estate.person(staff_id)
    department = estate.department(person.department)

    def expand(choice: str) -> list[str]:
        if choice == "representative":
            return list(estate.municipality.representative_numbers)
        if choice == "department":
            return list(department.numbers) or list(estate.municipality.representative_numbers)
        return [numbers.normalise(choice)]

    chosen = expand(estate.caller_id.default)
    for rule in estate.caller_id.rules:
        if rule.role == person.role or rule.department == person.department:
            for choice in rule.may_present:
                chosen += expand(choice)
    return list(dict.fromkeys(chosen))
