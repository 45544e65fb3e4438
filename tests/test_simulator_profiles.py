"""Behaviour profiles: deterministic per seed, distributions as documented, duty hours."""

from __future__ import annotations

import statistics
from datetime import datetime

from simulator import profiles
from simulator.profiles import ANSWER, BUSY, DND, NO_ANSWER, PROFILES, decide


def _decisions(name: str, seed: int, n: int = 4000, **kw):
    kw = {"on_duty": True, "takes_phone_home": False, **kw}
    return [decide(PROFILES[name], seed, "2001", i, **kw) for i in range(n)]


def test_same_seed_same_decisions_other_seed_others():
    assert _decisions("smartphone", 7, 200) == _decisions("smartphone", 7, 200)
    assert _decisions("smartphone", 7, 200) != _decisions("smartphone", 8, 200)


def test_outcome_shares_follow_the_profile():
    p = PROFILES["smartphone"]
    got = [d.action for d in _decisions("smartphone", 1)]
    for action, share in ((DND, p.dnd), (BUSY, p.busy), (NO_ANSWER, p.no_answer)):
        assert abs(got.count(action) / len(got) - share) < 0.02, action
    assert {d.status for d in _decisions("smartphone", 1) if d.action == BUSY} == {486}


def test_smartphones_wake_by_push_desk_phones_do_not():
    phone = [d for d in _decisions("smartphone", 1) if d.action == ANSWER]
    desk = [d for d in _decisions("desk_phone", 1) if d.action == ANSWER]
    pushed = [d for d in phone if d.reason == "push wake-up"]
    assert abs(len(pushed) / len(phone) - 0.6) < 0.05
    assert not any(d.reason for d in desk)
    assert statistics.median(d.delay_s for d in phone) > statistics.median(d.delay_s for d in desk)
    assert abs(statistics.median(d.delay_s for d in desk) - 3.0) < 0.3
    assert all(0 < d.hold_s <= 3600 for d in phone)


def test_off_duty_only_people_who_take_their_phone_home_answer():
    off = _decisions("smartphone", 1, 100, on_duty=False)
    assert {d.action for d in off} == {NO_ANSWER}
    home = _decisions("smartphone-manager", 1, 200, on_duty=False, takes_phone_home=True)
    assert ANSWER in {d.action for d in home}


def test_forced_states_and_functional_mode():
    assert {d.action for d in _decisions("operator", 1, 50, forced=DND)} == {DND}
    assert {d.action for d in _decisions("smartphone", 1, 500, realistic=False)} == {ANSWER}


def test_profile_per_role_and_device():
    assert profiles.profile_name("operator", "desk_phone") == "operator"
    assert profiles.profile_name("manager", "smartphone") == "smartphone-manager"
    assert profiles.profile_name("staff", "island_group_phone") == "island_group_phone"


def test_registrations_spread_over_time_and_expiry():
    plans = [profiles.registration_plan(PROFILES["smartphone"], 1, str(e)) for e in range(2000, 3000)]
    starts = sorted(p[0] for p in plans)
    expiries = [p[1] for p in plans]
    assert starts[0] >= 0 and starts[-1] <= 10
    assert max(sum(1 for s in starts if int(s) == sec) for sec in range(10)) < 150  # no single-second wave
    assert min(expiries) >= 0.7 * 600 - 1 and max(expiries) <= 600
    assert len(set(expiries)) > 100


def test_duty_hours_from_the_estate_schedule():
    from simulator.supervisor import open_intervals
    from tsunagu.calendar import JST, is_open
    from tsunagu.estate import load_estate

    from .conftest import TINY

    schedule = load_estate(TINY).schedules["default"]
    start = datetime(2026, 11, 24, 9, 0, tzinfo=JST)  # a Tuesday
    intervals = open_intervals(schedule, start)
    for hour in (7, 9, 12, 17, 18, 23):
        for day in (24, 28, 29):  # Tuesday, Saturday, Sunday
            moment = datetime(2026, 11, day, hour, 0, tzinfo=JST)
            assert profiles.on_duty(intervals, moment.timestamp()) == is_open(schedule, moment), moment
