"""The storm runner's pieces that need no lab: Locust's command lines, the carrier's size,
the generator's verdict, and the office hour a storm pins the PBX's clock to."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tsunagu.calendar import JST, next_office_hour
from tsunagu.estate import load_estate
from tsunagu.storm import generator, runner
from tsunagu.storm.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small():
    return load_estate(REPO / "examples" / "small-city.yaml")


def test_a_master_with_two_workers_is_three_locust_processes_on_loopback(tmp_path):
    scenario = load_scenario("smoke")
    master, *workers = runner.locust_commands(Path("/run"), "e.yaml", "smoke", scenario, tmp_path, 2, web=False)
    assert len(workers) == 2
    assert "--master" in master and master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert master[master.index("--expect-workers") + 1] == "2"
    port = master[master.index("--master-bind-port") + 1]
    for n, w in enumerate(workers, 1):
        assert "--worker" in w and w[w.index("--master-port") + 1] == port
        assert w[w.index("--logfile") + 1] == str(tmp_path / f"locust-worker-{n}.log")
        assert w[w.index("--scenario") + 1] == "smoke"  # custom options reach every worker
    assert master[master.index("--run-time") + 1] == "60s" and "--headless" in master


def test_the_web_ui_listens_on_loopback_only(tmp_path):
    (master,) = runner.locust_commands(Path("/run"), "e.yaml", "smoke", load_scenario("smoke"), tmp_path, 0, web=True)
    assert master[master.index("--web-host") + 1] == "127.0.0.1" and "--headless" not in master


def test_the_carrier_has_lines_for_the_scenario_s_peak(small):
    smoke, surge = load_scenario("smoke"), load_scenario("disaster-surge")
    assert runner.carrier_workers_for(smoke, small) * runner.CARRIER_SLOTS >= (
        smoke.rates(small)["citizen"] * (smoke.mean_hold_s() + runner.TYPICAL_RING_S))
    assert runner.carrier_workers_for(surge, small) > runner.carrier_workers_for(load_scenario("morning-peak"), small)


def _samples(busiest: float, machine: float, n: int = 10):
    return [generator.Sample(float(t), busiest, busiest, 1, machine) for t in range(n)]


def test_a_quiet_generator_makes_a_valid_run():
    v = generator.verdict(_samples(0.3, 0.5), retransmissions=2, refused=0, attempts=100, locust_cpu_warning=False)
    assert not v["saturated"] and v["reason"] == "" and v["retransmissions"] == 2
    assert v["cpu_percent_mean"] == 30.0 and v["machine_percent_mean"] == 50.0


@pytest.mark.parametrize(("samples", "refused", "warned", "reason"), [
    (_samples(0.95, 0.5), 0, False, "a generator process used 95% of a core over 5 s"),
    (_samples(0.3, 0.97), 0, False, "the machine was 97% busy over the storm"),
    (_samples(0.3, 0.5), 0, True, "Locust warned that its CPU was above 90 %"),
    (_samples(0.3, 0.5), 3, False, "the farm could not place 3 of 100 calls (no free call slot)"),
])
def test_a_saturated_generator_makes_the_run_invalid(samples, refused, warned, reason):
    v = generator.verdict(samples, retransmissions=0, refused=refused, attempts=100, locust_cpu_warning=warned)
    assert v["saturated"] and v["reason"] == reason


def test_a_short_burst_is_not_saturation():
    samples = _samples(0.3, 0.5, 10)
    samples[4] = generator.Sample(4.0, 1.0, 1.0, 1, 0.5)  # one busy second in a 5 s window
    assert not generator.verdict(samples, retransmissions=0, refused=0, attempts=10,
                                 locust_cpu_warning=False)["saturated"]


def test_the_storm_s_office_hour_skips_weekends_and_holidays(small):
    schedule = small.schedules["default"]
    sunday = datetime(2026, 11, 22, 15, 0, tzinfo=JST)  # Monday the 23rd is 勤労感謝の日
    assert next_office_hour(schedule, sunday) == datetime(2026, 11, 24, 9, 30, tzinfo=JST)
    tuesday_night = datetime(2026, 11, 24, 22, 0, tzinfo=JST)
    assert next_office_hour(schedule, tuesday_night).date().isoformat() == "2026-11-24"
