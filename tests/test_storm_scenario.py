"""Storm scenarios: the built-in files load, the load curve and rates follow the estate,
and a bad scenario names its file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tsunagu.estate import load_estate
from tsunagu.problems import EstateInvalid
from tsunagu.storm.scenario import builtin_names, load_scenario

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "examples" / "small-city.yaml"


@pytest.fixture(scope="module")
def small():
    return load_estate(SMALL)


def test_the_issue_s_scenarios_are_built_in():
    assert {"smoke", "morning-peak", "lunchtime", "disaster-surge", "registration-storm"} <= set(builtin_names())
    for name in builtin_names():
        assert load_scenario(name).name == name


def test_citizen_rates_come_from_each_group_s_calls_per_hour(small):
    peak = load_scenario("morning-peak")
    total_per_hour = sum(g.calls_per_hour for g in small.hunt_groups)
    assert peak.rates(small)["citizen"] == pytest.approx(total_per_hour * peak.time_scale / 3600)
    assert peak.rates(small)["staff"] == pytest.approx(len(small.staff) * 1.0 * peak.time_scale / 3600)
    assert load_scenario("lunchtime").rates(small)["citizen"] == pytest.approx(0.4 * total_per_hour * 4 / 3600)


def test_the_disaster_surge_reaches_ten_times_within_a_minute():
    surge = load_scenario("disaster-surge")
    assert surge.multiplier(0) == 1 and surge.multiplier(30) == 1
    assert surge.multiplier(60) == pytest.approx(5.5)
    assert surge.multiplier(90) == 10 and surge.multiplier(170) == 10


def test_expected_calls_integrate_the_load_curve(small):
    surge = load_scenario("disaster-surge")
    rate = surge.rates(small)["citizen"]
    # 30 s at 1x, 60 s ramping 1x -> 10x (mean 5.5x), 90 s at 10x
    assert surge.expected_calls(small)["citizen"] == pytest.approx(rate * (30 + 60 * 5.5 + 90 * 10), rel=0.01)


def test_time_compression_keeps_the_erlangs(small):
    fast = load_scenario("smoke")
    real_time = fast.model_copy(update={"time_scale": 1.0})
    assert fast.rates(small)["citizen"] == pytest.approx(10 * real_time.rates(small)["citizen"])
    erlangs = [s.rates(small)["citizen"] * s.mean_hold_s() for s in (fast, real_time)]
    assert erlangs[0] == pytest.approx(erlangs[1])


@pytest.mark.parametrize(("text", "problem"), [
    ("name: x\nduration_s: 0\n", "x.yaml:2: duration_s: input should be greater than 0 (got 0)"),
    ("name: x\nduration_s: 5\nload:\n  - {at_s: 10, x: 1}\n  - {at_s: 5, x: 2}\n",
     "x.yaml:3: load: load points must be in order of at_s"),
    ("name: x\nduration_s: 5\nstafff: {per_staff_per_hour: 1}\n",
     "x.yaml:3: stafff: unknown field 'stafff' (did you mean 'staff'?)"),
    ("name: x\nduration_s: 5\nregistration_storms:\n  - {at_s: 1}\n",
     "x.yaml:4: registration_storms[0].spread_s: required field 'spread_s' is missing"),
])
def test_a_bad_scenario_names_file_line_and_field(tmp_path, text, problem):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(EstateInvalid) as exc:
        load_scenario(str(path))
    assert [str(p).replace(str(tmp_path) + "/", "") for p in exc.value.problems] == [problem]


def test_an_unknown_scenario_name_lists_the_built_in_ones():
    with pytest.raises(EstateInvalid, match="no such scenario .*morning-peak"):
        load_scenario("no-such-storm")


def test_the_locustfile_runs_with_plain_locust():
    out = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f", str(REPO / "loadtests" / "city_storm.py"),
                          "--list"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"Citizen", "StaffCaller", "OutboundCaller", "RegistrationStorms"} <= set(out.stdout.split())
