"""Which handsets share a worker: call slots, spreading of groups, sites, shards."""

from __future__ import annotations

import pytest

from simulator.assignment import ACCOUNTS_PER_WORKER, CALL_SLOTS, assign, violations
from tsunagu.estate import load_estate

from .conftest import TINY


def _estate_with_group(write_estate, tiny_text, size: int, strategy: str):
    staff = "\n".join(f'  - {{id: g{n}, name: 職員 {n}, department: shimin, extension: "{2100 + n}"}}'
                      for n in range(size))
    members = ", ".join(f"{{staff: g{n}}}" for n in range(size))
    text = tiny_text.replace("hunt_groups:\n", f"{staff}\nhunt_groups:\n  - id: big\n    name: 大\n"
                             f"    strategy: {strategy}\n    members: [{members}]\n", 1)
    return load_estate(write_estate(text))


def test_tiny_is_sound():
    layout = assign(load_estate(TINY))
    assert violations(layout) == []
    assert {w.site for w in layout.workers} == {"hall"}
    assert sum(len(w.extensions) for w in layout.workers) == 7


def test_a_simultaneous_group_of_twenty_is_spread(write_estate, tiny_text):
    layout = assign(_estate_with_group(write_estate, tiny_text, 20, "simultaneous"))
    assert violations(layout) == []
    for w in layout.workers:
        members = [e for e in w.extensions if "big" in layout.handsets[e].groups]
        assert len(members) <= 1, w  # two branches of one call at one pjsua endpoint: 482 for one
        assert len(w.extensions) <= ACCOUNTS_PER_WORKER


def test_a_group_ringing_one_at_a_time_is_held_to_the_call_slots(write_estate, tiny_text):
    sequential = assign(_estate_with_group(write_estate, tiny_text, 20, "sequential"))
    simultaneous = assign(_estate_with_group(write_estate, tiny_text, 20, "simultaneous"))
    assert violations(sequential) == []
    for w in sequential.workers:
        assert sum("big" in sequential.handsets[e].groups for e in w.extensions) <= CALL_SLOTS
    assert len(sequential.workers) < len(simultaneous.workers)


def test_violations_are_found(write_estate, tiny_text):
    from dataclasses import replace

    layout = assign(_estate_with_group(write_estate, tiny_text, 20, "simultaneous"))
    crowded = [e for e in layout.handsets if "big" in layout.handsets[e].groups][:8]
    bad = replace(layout, workers=(replace(layout.workers[0], extensions=tuple(crowded)),))
    problems = violations(bad)
    assert any("members of group big" in p for p in problems)
    assert any("has no worker" in p for p in problems)


def test_assignment_is_deterministic_and_shards_partition_it():
    estate = load_estate(TINY)
    assert assign(estate) == assign(estate)
    layout = assign(estate)
    shards = [layout.shard(i, 3) for i in range(3)]
    held = [e for s in shards for w in s.workers for e in w.extensions]
    assert sorted(held) == sorted(layout.handsets)
    with pytest.raises(ValueError):
        layout.shard(3, 3)


def test_the_farm_stage_never_asks_a_worker_to_ring_more_than_its_slots():
    from collections import Counter

    from tsunagu.numbering import group_numbers
    from tsunagu.rehearse import call_batches

    estate = load_estate(TINY.parent.parent.parent / "examples" / "small-city.yaml")
    groups = list(group_numbers(estate))
    layout = assign(estate)
    batches = call_batches(estate, groups, lines=8)
    assert sorted(g for b in batches for g in b) == sorted(groups)
    for batch in batches:
        assert len(batch) <= 8
        load = Counter(w for gid in batch for w in {layout.worker_of(estate.person(m.staff).extension).id
                                                    for m in estate.group(gid).members})
        assert max(load.values()) <= CALL_SLOTS
