"""The example estates: generated (never hand-edited), valid, and shaped like their cities."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsunagu import generate
from tsunagu.estate import load_estate
from tsunagu.model import AfterHoursAction, Device, Role, SiteKind, Strategy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PBX_KINDS = (SiteKind.CLOUD_REGION, SiteKind.DATACENTER)


@pytest.mark.parametrize("name", sorted(generate.PROFILES))
def test_example_is_the_generator_output(name):
    checked_in = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    assert checked_in == generate.render_profile(name), (
        f"examples/{name}.yaml differs from the generator; run: tsunagu generate --profile {name} "
        f"--output examples/{name}.yaml")


@pytest.fixture(scope="module")
def small():
    return load_estate(EXAMPLES / "small-city.yaml")


@pytest.fixture(scope="module")
def large():
    return load_estate(EXAMPLES / "large-city.yaml")


def _people(estate):
    return [p for p in estate.staff if p.device in (Device.SMARTPHONE, Device.DESK_PHONE)]


def _municipal(estate):
    return [s for s in estate.sites if s.kind not in PBX_KINDS]


def _kinds(sites):
    return sorted(s.kind.value for s in sites)


def test_small_city_has_about_700_staff_in_four_buildings_and_two_cloud_zones(small):
    assert 630 <= len(_people(small)) <= 770
    assert _kinds(_municipal(small)) == ["branch", "branch", "city_hall", "community_centre"]
    pbx = [small.site(s) for s in small.placement.pbx]
    assert [(s.kind, s.cloud_zone) for s in pbx] == [
        (SiteKind.CLOUD_REGION, "ap-northeast-1a"), (SiteKind.CLOUD_REGION, "ap-northeast-3a")]


def test_small_city_operator_transfers_to_island_phones(small):
    assert [p for p in small.staff if p.role is Role.OPERATOR]
    islands = [p for p in small.staff if p.device is Device.ISLAND_GROUP_PHONE]
    in_groups = {m.staff for g in small.hunt_groups for m in g.members}
    assert islands and {p.id for p in islands} <= in_groups
    for dept in small.departments:  # one group phone per desk island, in every department
        assert any(p.department == dept.id for p in islands)


def test_small_city_only_managers_take_phones_home_and_ring_after_hours(small):
    assert {p.role for p in small.staff if p.takes_phone_home} == {Role.MANAGER}
    assert {g.after_hours.action for g in small.hunt_groups} == {AfterHoursAction.RING_HOME_PHONES}


def test_small_city_keeps_building_paging(small):
    pa = [p for p in small.staff if p.device is Device.PA_GATEWAY]
    assert small.site_of(pa[0]) == "hall" and len(pa) == len(_municipal(small))


def test_large_city_has_about_8000_staff_in_21_buildings_with_three_wards(large):
    assert 7200 <= len(_people(large)) <= 8800
    municipal = _municipal(large)
    assert len(municipal) == 21
    wards = [s for s in municipal if s.kind is SiteKind.WARD_OFFICE]
    assert sorted(s.name for s in wards) == sorted(["緑区役所", "中央区役所", "南区役所"])
    assert large.numbering.extension_length == 5


def test_large_city_department_numbers_ring_by_priority_or_rotation(large):
    answering = [g for g in large.hunt_groups if g.answers and g.answers != "representative"]
    sequential = [g for g in answering if g.strategy is Strategy.SEQUENTIAL]
    assert sequential and all([m.order for m in g.members][:2] == [1, 2] for g in sequential)
    assert any(g.strategy is Strategy.ROTATION for g in answering)
    assert any(g.strategy is Strategy.SIMULTANEOUS for g in answering)


def test_large_city_groups_carry_busy_hour_load_for_erlang_c(large):
    for group in large.hunt_groups:
        assert group.calls_per_hour > 0, group.id
    switchboard = next(g for g in large.hunt_groups if g.answers == "representative")
    operators = [m for m in switchboard.members if large.person(m.staff).role is Role.OPERATOR]
    # Offered erlangs at 40 s per switchboard call stay below the operators on duty.
    assert switchboard.calls_per_hour * 40 / 3600 < len(operators)
    total = sum(g.calls_per_hour for g in large.hunt_groups)
    assert 2000 < total < 10_000


def test_large_city_phonebook_problem_is_real(large):
    assert len(large.staff) > 2000  # the handset limit bites: see test_phonebook.py
