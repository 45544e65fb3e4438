"""Which handsets share a worker process.

A worker has 8 accounts but only 4 call slots, and one pjsua endpoint for them all. A group
that rings its members together sends them branches of one call: the same Call-ID, From tag
and CSeq. Two of those arriving at one endpoint are a merged request to pjsip (RFC 3261
§8.2.2.2): it answers the second 482 and that member never rings (seen in a storm: a
simultaneous group's two members on one worker, one alerted). So members of a simultaneous
(or tiered) group are spread: at most `share` of them per worker (default 1; more would
also crowd the worker's call slots). Groups that ring one
member at a time still ring one member per waiting caller, so they are held to the call
slots (4 per worker). Handsets are assigned per site (a worker lives in one
site's namespace), most constrained first, first fit; the result is deterministic, so every
shard of a sharded farm computes the same assignment and takes its own slice of workers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

ACCOUNTS_PER_WORKER = 8  # PJSUA_MAX_ACC in the pjsua2 wheels
CALL_SLOTS = 4  # PJSUA_MAX_CALLS
SIMULTANEOUS_SHARE = 1
RINGS_TOGETHER = ("simultaneous", "tiered")


@dataclass(frozen=True)
class Handset:
    extension: str
    staff: str
    site: str
    department: str
    role: str
    device: str
    takes_phone_home: bool
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerSpec:
    id: str
    site: str
    index: int  # position among the site's workers; gives the worker its own RTP ports
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class Assignment:
    workers: tuple[WorkerSpec, ...]
    handsets: dict[str, Handset] = field(repr=False)
    limits: dict[str, int] = field(repr=False)  # group -> most members one worker may hold

    def worker_of(self, extension: str) -> WorkerSpec:
        return next(w for w in self.workers if extension in w.extensions)

    def shard(self, index: int, count: int) -> Assignment:
        """Shard `index` of `count` (0-based): every count-th worker, so each machine gets
        a slice of every site and the spreading of groups still holds across the farm."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index} is not in 0..{count - 1}")
        mine = tuple(w for n, w in enumerate(self.workers) if n % count == index)
        keep = {e for w in mine for e in w.extensions}
        return Assignment(mine, {e: h for e, h in self.handsets.items() if e in keep}, self.limits)


def handsets(estate) -> list[Handset]:
    groups = defaultdict(list)
    for g in estate.hunt_groups:
        for m in g.members:
            groups[m.staff].append(g.id)
    return [Handset(p.extension, p.id, estate.site_of(p), p.department, p.role.value, p.device.value,
                    p.takes_phone_home, tuple(groups.get(p.id, ()))) for p in estate.staff]


def ring_limits(estate, slots: int = CALL_SLOTS, share: int = SIMULTANEOUS_SHARE) -> dict[str, int]:
    return {g.id: min(share, slots) if g.strategy.value in RINGS_TOGETHER else slots
            for g in estate.hunt_groups}


def assign(estate, accounts: int = ACCOUNTS_PER_WORKER, slots: int = CALL_SLOTS,
           share: int = SIMULTANEOUS_SHARE) -> Assignment:
    limits = ring_limits(estate, slots, share)
    everyone = handsets(estate)
    size = Counter(g for h in everyone for g in h.groups)

    def constraint(h: Handset) -> tuple:
        tight = [size[g] for g in h.groups if limits[g] < slots]
        return (-max(tight, default=0), -len(h.groups), h.extension)

    by_site: dict[str, list[Handset]] = defaultdict(list)
    for h in everyone:
        by_site[h.site].append(h)
    workers: list[WorkerSpec] = []
    for site in sorted(by_site):
        people = sorted(by_site[site], key=constraint)
        at_site = Counter(g for h in people for g in h.groups)
        # as few workers as the accounts and the spreading allow, made up front, so the
        # members of ringing-together groups can be spread over all of them: first fit
        # would stack one member of every big group on the same first workers, and a few
        # calls to different groups at once would take all of those workers' call slots
        count = max([math.ceil(len(people) / accounts)]
                    + [math.ceil(n / limits[g]) for g, n in at_site.items() if limits[g] < slots])
        bins: list[tuple[list[str], Counter]] = [([], Counter()) for _ in range(count)]

        def rings(b: tuple[list[str], Counter]) -> int:
            return sum(n for g, n in b[1].items() if limits[g] < slots)

        for h in people:
            fits = [b for b in bins if len(b[0]) < accounts and all(b[1][g] < limits[g] for g in h.groups)]
            if not fits:
                fits = [([], Counter())]
                bins.append(fits[0])
            fit = min(fits, key=lambda b: (rings(b), len(b[0]))) if any(limits[g] < slots for g in h.groups) \
                else fits[0]
            fit[0].append(h.extension)
            fit[1].update(h.groups)
        bins = [b for b in bins if b[0]]
        workers += [WorkerSpec(f"{site}-{n:03d}", site, n, tuple(sorted(exts)))
                    for n, (exts, _) in enumerate(bins)]
    return Assignment(tuple(workers), {h.extension: h for h in everyone}, limits)


def violations(assignment: Assignment, accounts: int = ACCOUNTS_PER_WORKER) -> list[str]:
    """Every way the assignment breaks its own rules (empty when it is sound)."""
    problems, seen = [], Counter()
    for w in assignment.workers:
        if len(w.extensions) > accounts:
            problems.append(f"worker {w.id} holds {len(w.extensions)} handsets (at most {accounts})")
        count = Counter(g for e in w.extensions for g in assignment.handsets[e].groups)
        for g, n in count.items():
            if n > assignment.limits[g]:
                problems.append(f"worker {w.id} holds {n} members of group {g} (at most {assignment.limits[g]})")
        for e in w.extensions:
            seen[e] += 1
            if assignment.handsets[e].site != w.site:
                problems.append(f"handset {e} of site {assignment.handsets[e].site} is on worker {w.id}")
    problems += [f"handset {e} is on {n} workers" for e, n in seen.items() if n > 1]
    problems += [f"handset {e} has no worker" for e in assignment.handsets if e not in seen]
    return problems
