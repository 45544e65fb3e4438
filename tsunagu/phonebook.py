"""The phonebook a handset gets, per department, within the handset's entry limit.

A handset holds about 2,000 entries (the Hokkaido rollout), fewer than a large
city's staff, so phonebooks are cut per department and by priority: what a
department calls most comes first, the rest of the city last.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .model import Department, Device, Estate, HuntGroup, Role, Staff

DEFAULT_LIMIT = 2000


@dataclass(frozen=True)
class Entry:
    name: str
    extension: str
    kind: str  # a role for people ('staff', 'manager', 'operator'), else the device or 'hunt_group'
    department_id: str  # '' for groups that answer no department
    department: str
    site: str  # where the department sits: what "the same site" means
    published: tuple[str, ...] = ()  # DIDs a hunt group answers
    answers: str | None = None


_LEADERS = (Role.MANAGER.value, Role.OPERATOR.value)  # plain strings: this test runs per entry per book

# Priority tiers in order; an entry belongs to the first tier it matches.
Tier = tuple[str, Callable[[Entry, Department], bool]]
TIERS: tuple[Tier, ...] = (
    ("own department", lambda e, d: e.department_id == d.id or e.answers == d.id),
    ("published numbers", lambda e, d: e.kind == "hunt_group"),
    ("managers and operators", lambda e, d: e.kind in _LEADERS),
    ("same site", lambda e, d: e.site == d.site),
    ("rest", lambda e, d: True),
)


@dataclass(frozen=True)
class Phonebook:
    department: Department
    entries: list[Entry]
    offered: dict[str, int]  # entries per tier before the cut
    kept: dict[str, int]
    limit: int | None

    @property
    def dropped(self) -> int:
        return sum(self.offered.values()) - len(self.entries)

    def policy(self) -> str:
        """What the cut did, in one line, for the person distributing phonebooks."""
        who = f"phonebook {self.department.name} ({self.department.id})"
        total = sum(self.offered.values())
        if not self.dropped:
            limit = f"the limit of {self.limit:,}" if self.limit else "no limit"
            return f"{who}: all {total:,} entries fit {limit}; nothing dropped"
        order = " > ".join(name for name, _ in TIERS)
        kept = ", ".join(f"{name} {self.kept[name]:,}/{self.offered[name]:,}" for name, _ in TIERS)
        return (f"{who}: {total:,} entries exceed the limit of {self.limit:,}; priority {order}; "
                f"kept {kept}; dropped {self.dropped:,}")


def entries(estate: Estate) -> list[Entry]:
    """Every dialable entry of the estate: hunt group pilots first, then staff in estate order."""
    out = [_group_entry(estate, g) for g in estate.hunt_groups if g.pilot_extension]
    return out + [_staff_entry(estate, p) for p in estate.staff]


def _staff_entry(estate: Estate, person: Staff) -> Entry:
    dept = estate.department(person.department)
    kind = person.role.value if person.device in (Device.SMARTPHONE, Device.DESK_PHONE) else person.device.value
    return Entry(person.name, person.extension, kind, dept.id, dept.name, dept.site)


def _group_entry(estate: Estate, group: HuntGroup) -> Entry:
    if group.answers == "representative":
        owner, published = estate.municipality.name, tuple(estate.municipality.representative_numbers)
        return Entry(group.name, group.pilot_extension, "hunt_group", "", owner, "", published, group.answers)
    if group.answers:
        dept = estate.department(group.answers)
        return Entry(group.name, group.pilot_extension, "hunt_group", dept.id, dept.name, dept.site,
                     tuple(dept.numbers), group.answers)
    return Entry(group.name, group.pilot_extension, "hunt_group", "", estate.municipality.name, "")


def phonebook(estate: Estate, department: Department, limit: int | None = DEFAULT_LIMIT,
              candidates: list[Entry] | None = None) -> Phonebook:
    """`candidates` lets a caller building every department's book compute entries once."""
    tiers: dict[str, list[Entry]] = {name: [] for name, _ in TIERS}
    for entry in candidates if candidates is not None else entries(estate):
        tiers[next(name for name, matches in TIERS if matches(entry, department))].append(entry)
    kept: list[Entry] = []
    kept_per_tier = {}
    for name, tier in tiers.items():
        room = len(tier) if limit is None else max(0, min(len(tier), limit - len(kept)))
        kept += tier[:room]
        kept_per_tier[name] = room
    return Phonebook(department, kept, {k: len(v) for k, v in tiers.items()}, kept_per_tier, limit)


# ---------------------------------------------------------------- formats

CSV_COLUMNS = ("name", "extension", "department", "kind", "published_numbers")


def to_csv(book: Phonebook) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in book.entries:
        writer.writerow((e.name, e.extension, e.department, e.kind, " ".join(e.published)))
    return out.getvalue()


def to_vcard(book: Phonebook, municipality: str) -> str:
    return "".join(_vcard(e, municipality) for e in book.entries)


@functools.lru_cache(maxsize=100_000)  # every department's book repeats most entries
def _vcard(entry: Entry, municipality: str) -> str:
    family, _, given = entry.name.partition(" ")
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"N:{_escape(family)};{_escape(given)};;;",
        f"FN:{_escape(entry.name)}",
        f"ORG:{_escape(municipality)};{_escape(entry.department)}" if entry.department != municipality
        else f"ORG:{_escape(municipality)}",
        f"TEL;TYPE=WORK:{entry.extension}",
    ]
    if entry.published:
        lines.append(f"NOTE:{_escape('published ' + ' '.join(entry.published))}")
    lines.append("END:VCARD")
    return "".join(_fold(line) + "\r\n" for line in lines)


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
            .replace("\n", "\\n"))


def _fold(line: str, octets: int = 75) -> str:
    """RFC 2425 folding: no line longer than 75 octets, never splitting a UTF-8 character."""
    if len(line.encode("utf-8")) <= octets:
        return line
    parts, current, size = [], "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > octets:
            parts.append(current)
            current, size = " ", 1  # the continuation's leading space counts
        current += char
        size += width
    return "\r\n".join(parts + [current])


FORMATS = {"csv": ("csv", lambda book, estate: to_csv(book)),
           "vcard": ("vcf", lambda book, estate: to_vcard(book, estate.municipality.name))}


# ---------------------------------------------------------------- command line


def find_department(estate: Estate, wanted: str) -> Department:
    for dept in estate.departments:
        if wanted in (dept.id, dept.name):
            return dept
    known = [d.id for d in estate.departments] + [d.name for d in estate.departments]
    close = difflib.get_close_matches(wanted, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise LookupError(f"no department {wanted!r}{hint}")


def _write(text: str, file: str | None) -> None:
    if file:
        Path(file).write_text(text, encoding="utf-8", newline="")
    else:
        sys.stdout.write(text)


def _phonebook(args) -> int:
    from .cli import EXIT_INVALID, load_or_exit

    estate = load_or_exit(args.estate)
    limit = args.limit or None
    suffix, render = FORMATS[args.format]
    if args.all_departments:
        if not args.output_dir:
            print("tsunagu phonebook: --all-departments needs --output-dir", file=sys.stderr)
            return EXIT_INVALID
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        candidates = entries(estate)
        for dept in estate.departments:
            book = phonebook(estate, dept, limit, candidates)
            _write(render(book, estate), str(out / f"{dept.id}.{suffix}"))
            print(book.policy(), file=sys.stderr)
        return 0
    if not args.department:
        print("tsunagu phonebook: give --department D or --all-departments", file=sys.stderr)
        return EXIT_INVALID
    try:
        dept = find_department(estate, args.department)
    except LookupError as exc:
        print(f"tsunagu phonebook: {exc}", file=sys.stderr)
        return EXIT_INVALID
    book = phonebook(estate, dept, limit)
    _write(render(book, estate), args.output)
    print(book.policy(), file=sys.stderr)
    return 0


def add_command(sub) -> None:
    p = sub.add_parser(
        "phonebook", help="the phonebook a department's handsets get, cut to the handset's limit",
        description="Write the phonebook for a department's handsets. When the estate has more entries "
        "than a handset holds, keep by priority: own department, published numbers (hunt group "
        "pilots), managers and operators, other departments of the same site, then the rest. "
        "The policy applied and the number of entries dropped go to standard error.",
    )
    p.add_argument("estate", help="estate YAML file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--department", "-d", help="department id or name")
    which.add_argument("--all-departments", action="store_true",
                       help="one file per department in --output-dir")
    p.add_argument("--format", "-f", choices=sorted(FORMATS), default="csv",
                   help="csv (with a header) or vcard (vCard 3.0); default csv")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"entries a handset holds (default {DEFAULT_LIMIT}; 0 for no limit)")
    p.add_argument("--output", "-o", help="write here instead of standard output")
    p.add_argument("--output-dir", help="with --all-departments: the folder for DEPARTMENT.csv/.vcf")
    p.set_defaults(func=_phonebook)
