"""A storm scenario: who calls, how often, and how the load moves over the run.

Rates come from the estate wherever it has them: citizens call each hunt group at the
group's own `calls_per_hour` (its busy-hour offered load), scaled; staff and outbound calls
are given per staff member per hour. `time_scale` compresses the clock for a short
rehearsal: a busy hour's arrivals come in 1/time_scale of an hour and hold times shrink
alike, so each group sees the same offered load in erlangs. `load` multiplies the rates
over the run (piecewise linear between its points), which is how a morning peak, a
lunchtime lull or a disaster surge (10x within a minute) is written. A registration storm
makes every staff handset register again within `spread_s`.

Built-in scenarios live in `loadtests/scenarios/<name>.yaml`; `load_scenario` takes a name
or a path.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..model import Strict

SCENARIOS = Path(__file__).resolve().parent.parent.parent / "loadtests" / "scenarios"
KINDS = ("citizen", "staff", "outbound")


class Citizens(Strict):
    scale: float = Field(default=1.0, ge=0, description="x each hunt group's calls_per_hour")
    cover_every_group: bool = Field(
        default=False, description="the first citizen calls go to every group once (in random order, one a second "
        "per stream), so a short storm measures every group's gates; then each group at its share of the load")


class PerStaff(Strict):
    per_staff_per_hour: float = Field(default=0.0, ge=0)


class LoadPoint(Strict):
    at_s: float = Field(ge=0)
    x: float = Field(ge=0, le=100)


class RegistrationStorm(Strict):
    at_s: float = Field(ge=0)
    spread_s: float = Field(gt=0, le=3600)


class Scenario(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0, le=86400)
    time_scale: float = Field(default=1.0, ge=1, le=3600)
    streams: int = Field(default=2, ge=1, le=64, description="Locust users per kind of caller")
    citizens: Citizens = Citizens()
    staff: PerStaff = PerStaff(per_staff_per_hour=0.5)
    outbound: PerStaff = PerStaff(per_staff_per_hour=0.2)
    hold_s: float = Field(default=120.0, gt=0, description="mean hold time at full scale")
    answer_delay_scale: float = Field(
        default=1.0, gt=0, le=1, description="x the farm's answer delays (push wake-up, reaching for the "
        "phone); below 1 only for estates whose ring steps are shorter than people take to answer")
    office_hours: bool = Field(
        default=True, description="pin the PBX's clock to the estate's next office hour for the storm, so a "
        "rehearsal at night or on a holiday meets the day's routing; false = the real time")
    load: list[LoadPoint] = Field(default_factory=lambda: [LoadPoint(at_s=0, x=1)], min_length=1)
    registration_storms: list[RegistrationStorm] = Field(default_factory=list)

    @field_validator("load")
    @classmethod
    def _load_in_order(cls, load: list[LoadPoint]) -> list[LoadPoint]:
        times = [p.at_s for p in load]
        if times != sorted(times):
            raise ValueError("load points must be in order of at_s")
        return load

    def multiplier(self, t_s: float) -> float:
        """The load multiplier `t_s` seconds into the run."""
        points = self.load
        if t_s <= points[0].at_s:
            return points[0].x
        for a, b in zip(points, points[1:], strict=False):
            if t_s <= b.at_s:
                span = b.at_s - a.at_s
                return b.x if span == 0 else a.x + (b.x - a.x) * (t_s - a.at_s) / span
        return points[-1].x

    def rates(self, estate) -> dict[str, float]:
        """Calls per second of each kind at multiplier 1, after time compression."""
        per_s = self.time_scale / 3600.0
        return {
            "citizen": sum(g.calls_per_hour for g in estate.hunt_groups) * self.citizens.scale * per_s,
            "staff": len(estate.staff) * self.staff.per_staff_per_hour * per_s,
            "outbound": len(estate.staff) * self.outbound.per_staff_per_hour * per_s,
        }

    def mean_hold_s(self) -> float:
        return self.hold_s / self.time_scale

    def expected_calls(self, estate) -> dict[str, float]:
        """Calls of each kind the run should place (the integral of rate x multiplier)."""
        steps = max(1, int(self.duration_s))
        mean_x = sum(self.multiplier((i + 0.5) * self.duration_s / steps) for i in range(steps)) / steps
        return {k: r * mean_x * self.duration_s for k, r in self.rates(estate).items()}


def scenario_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SCENARIOS / f"{name_or_path}.yaml"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file; problems as FILE:LINE: path: message."""
    from ..estate import load_document

    path = scenario_path(name_or_path)
    if not path.exists():
        from ..problems import EstateInvalid, Problem

        known = ", ".join(builtin_names())
        raise EstateInvalid([Problem(str(path), 1, "(top level)", f"no such scenario (built-in: {known})")])
    return load_document(path, Scenario, "a storm scenario")
