"""A call storm on a rehearsal lab: citizens, staff and outbound calls, paced by Locust.

    locust -f loadtests/city_storm.py --headless --run-dir runs/kinokawa \\
        --scenario morning-peak -u 16 -r 16 --run-time 300s --csv out/locust --html out/locust.html

(-u only needs to be at least the scenario's streams per kind of caller times the kinds,
plus one for registration storms; the scenario, not -u, sets how many users run.)

The lab must be up and deployed, and its handset farm running (`tsunagu farm start`);
`tsunagu storm` does all of that and starts Locust itself (also as a master with workers).
Locust is the pacing clock and the statistics engine; the calls are the farm's pjsua2
handsets (see farm_link.py). Each kind of caller is `streams` users (the scenario says how
many), each an independent Poisson arrival stream whose rate follows the scenario's load
curve, so the offered load does not depend on how long calls take or on how many Locust
workers share the users. A user's task places a call and returns; the outcome is reported
when the farm's events bring it.
"""

from __future__ import annotations

import random
import time

from locust import User, events, task

from loadtests.farm_link import FarmLink
from tsunagu.estate import load_estate
from tsunagu.numbering import group_numbers
from tsunagu.storm.scenario import load_scenario

_state: dict = {}


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--run-dir", env_var="TSUNAGU_RUN_DIR", default="",
                        help="the lab's run dir (its farm must be running)")
    parser.add_argument("--scenario", env_var="TSUNAGU_SCENARIO", default="morning-peak",
                        help="a built-in scenario name (loadtests/scenarios/) or a scenario YAML file")
    parser.add_argument("--estate", env_var="TSUNAGU_ESTATE", default="",
                        help="estate YAML (default: the one the lab was built from)")


@events.init.add_listener
def _init(environment, **_):
    options = environment.parsed_options
    if options is None or not options.run_dir:
        return  # imported for inspection (locust --list), or a worker waiting for the master's options
    from simulator.control import open_farm

    farm = open_farm(options.run_dir)
    estate = load_estate(options.estate or farm.settings["estate"])
    scenario = load_scenario(options.scenario)
    rates = scenario.rates(estate)
    numbers = group_numbers(estate)
    weights = {g.id: g.calls_per_hour for g in estate.hunt_groups if numbers.get(g.id)}
    pilots = {g.id: g.pilot_extension for g in estate.hunt_groups if g.pilot_extension and g.id not in weights}
    if not any(weights.values()):  # an estate without offered loads: every group alike
        weights = dict.fromkeys(weights, 1.0)
    sites: dict[str, list[str]] = {}
    for person in estate.staff:
        sites.setdefault(estate.site_of(person), []).append(person.extension)
    from simulator.assignment import assign
    from simulator.carrier import public_numbers

    workers = assign(estate).workers if pilots else ()

    _state.update(
        environment=environment, estate=estate, scenario=scenario, rates=rates, numbers=numbers,
        groups=list(weights), weights=list(weights.values()), sites=sites,
        staff=[(site, ext) for site, extensions in sites.items() for ext in extensions],
        public=public_numbers(int(farm.settings.get("carrier_workers", 1))),
        outside=estate.numbering.outside_line_prefix, run_dir=options.run_dir, link=None,
        pilots=pilots, pilot_callers={gid: _pilot_callers(estate, gid, workers) for gid in pilots},
        cover=random.sample([*weights, *pilots], len(weights) + len(pilots))
        if scenario.citizens.cover_every_group else [],
    )
    for cls in (Citizen, StaffCaller, OutboundCaller):
        cls.fixed_count = scenario.streams if rates[cls.kind] > 0 else 0
    RegistrationStorms.fixed_count = 1 if scenario.registration_storms else 0
    # only the scenario's streams run, whatever -u says: a class left with fixed_count 0
    # would otherwise take the spare users by weight and add arrival streams of its own
    environment.user_classes = [c for c in environment.user_classes if c.fixed_count > 0]


def _pilot_callers(estate, gid: str, workers) -> list[str]:
    """Staff who may call group `gid` by its pilot: not members, and where possible on a farm
    worker that holds no member (two handsets of one pjsua endpoint on both ends of a call
    is the farm's artefact, not a city's)."""
    members = {m.staff for m in estate.group(gid).members}
    extensions = {p.extension for p in estate.staff if p.id in members}
    callers = [p.extension for p in estate.staff if p.id not in members]
    allowed = set(callers)
    apart = [e for w in workers if not extensions & set(w.extensions)
             for e in w.extensions if e in allowed]
    return apart or callers


def _link() -> FarmLink:
    if _state.get("link") is None:
        _state["link"] = FarmLink.open(_state["run_dir"], _state["environment"])
    return _state["link"]


class StormUser(User):
    """One Poisson arrival stream of one kind of call."""

    abstract = True
    kind = ""

    def on_start(self):
        if not _state:
            raise RuntimeError("city_storm.py needs --run-dir (the lab whose farm is running)")
        self.link = _link()
        self.started = _state.setdefault("started", time.monotonic())
        self.rng = random.Random()

    def wait_time(self):
        scenario = _state["scenario"]
        rate = _state["rates"][self.kind] * scenario.multiplier(time.monotonic() - self.started)
        per_stream = rate / max(1, self.fixed_count)
        # a stream with no load right now looks again in a second (the curve may rise)
        return self.rng.expovariate(per_stream) if per_stream > 0 else 1.0

    def hold(self) -> float:
        return round(self.rng.expovariate(1.0 / _state["scenario"].mean_hold_s()), 2)

    def staff_member(self, elsewhere: str = "") -> tuple[str, str]:
        """(site, extension) of a member of staff on no call, anywhere or off site `elsewhere`
        (any, after a few tries: a storm heavier than the city's staff still goes out)."""
        for _ in range(20):
            site, ext = self.rng.choice(_state["staff"])
            if site != elsewhere and not self.link.busy(ext):
                break
        return site, ext


class Citizen(StormUser):
    """A citizen calls a representative or department number through the carrier."""

    kind = "citizen"
    COVER_EVERY_S = 1.0

    def wait_time(self):
        # the covering calls go out at a steady pace whatever the arrival rate, so even a
        # storm shorter than the mean gap between arrivals reaches every group
        return self.COVER_EVERY_S if _state["cover"] else super().wait_time()

    @task
    def call(self):
        cover = _state["cover"]
        gid = cover.pop() if cover else self.rng.choices(_state["groups"], _state["weights"])[0]
        limit = _state["estate"].group(gid).ring_limit_seconds
        if gid in _state["pilots"]:  # a group with no published number: staff reach it by its pilot
            callers = _state["pilot_callers"][gid]
            caller = self.rng.choice([c for c in callers if not self.link.busy(c)] or callers
                                     or [self.staff_member()[1]])
            self.link.place("call", "staff", f"staff:{gid}", limit, **{"from": caller, "to": _state["pilots"][gid]},
                            hold_s=self.hold(), group=gid)
            return
        number = _state["numbers"][gid][0]
        self.link.place("dial", self.kind, f"citizen:{gid}", limit, to=number.replace("-", ""),
                        hold_s=self.hold(), group=gid)


class StaffCaller(StormUser):
    """A member of staff calls a colleague at another site."""

    kind = "staff"

    @task
    def call(self):
        site, caller = self.staff_member()
        _, callee = self.staff_member(elsewhere=site if len(_state["sites"]) > 1 else "")
        if callee == caller:
            return
        self.link.place("call", self.kind, "staff:extension", 60, **{"from": caller, "to": callee},
                        hold_s=self.hold())


class OutboundCaller(StormUser):
    """A member of staff calls out to the public network (outside-line prefix + number)."""

    kind = "outbound"

    @task
    def call(self):
        _, caller = self.staff_member()
        free = [n for n in _state["public"] if not self.link.busy(n)] or _state["public"]
        to = _state["outside"] + self.rng.choice(free)
        self.link.place("call", self.kind, "outbound:public", 60, **{"from": caller, "to": to},
                        hold_s=self.hold())


class RegistrationStorms(User):
    """At the scenario's times, every staff handset registers again within `spread_s`."""

    fixed_count = 0

    def on_start(self):
        self.link = _link()
        self.started = _state.setdefault("started", time.monotonic())
        self.storms = sorted(_state["scenario"].registration_storms, key=lambda s: s.at_s)

    def wait_time(self):
        if not self.storms:
            return 3600.0
        return max(0.0, self.storms[0].at_s - (time.monotonic() - self.started))

    @task
    def storm(self):
        if self.storms and time.monotonic() - self.started >= self.storms[0].at_s:
            storm = self.storms.pop(0)
            self.link.registration_storm(storm.spread_s, watch_s=10.0)
