"""The estate: a city's telephony described once, as a handful of typed classes.

Field-level rules live here (types, ranges, formats). Rules that relate one part
of the estate to another (a member must exist, a DID must sit in a trunk range)
live in `checks.py`, so that every problem is collected in one pass.
"""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from . import numbers


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _phone_number(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            "write telephone numbers in quotes (YAML reads an unquoted number as an integer "
            "and drops the leading 0)"
        )
    return numbers.normalise(value)


def _digits(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("must be a string of digits")
    text = str(value)
    if not text.isdigit():
        raise ValueError(f"{text!r} must contain digits only")
    return text


PhoneNumber = Annotated[str, BeforeValidator(_phone_number)]
Digits = Annotated[str, BeforeValidator(_digits)]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]


class SiteKind(StrEnum):
    DATACENTER = "datacenter"
    CLOUD_REGION = "cloud_region"
    CITY_HALL = "city_hall"
    WARD_OFFICE = "ward_office"
    BRANCH = "branch"
    COMMUNITY_CENTRE = "community_centre"


class Service(StrEnum):
    PBX = "pbx"
    RTPENGINE = "rtpengine"
    REDIS = "redis"
    POSTGRESQL = "postgresql"
    DNS = "dns"


class Municipality(Strict):
    name: str = Field(min_length=1)
    name_en: str | None = None
    area_code: Annotated[Digits, Field(pattern=r"^0\d{1,4}$")]
    representative_numbers: list[PhoneNumber] = Field(min_length=1)
    sip_domain: Annotated[str, Field(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")]


class NumberingPlan(Strict):
    extension_length: int = Field(ge=2, le=8)
    outside_line_prefix: Digits = "0"
    ranges: list[ExtensionRange] = Field(min_length=1)


class ExtensionRange(Strict):
    first: Digits
    last: Digits

    @model_validator(mode="after")
    def _ordered(self) -> ExtensionRange:
        if len(self.first) != len(self.last) or int(self.first) > int(self.last):
            raise ValueError(f"range {self.first}..{self.last} is empty or mixes lengths")
        return self

    def __contains__(self, extension: str) -> bool:
        return len(extension) == len(self.first) and int(self.first) <= int(extension) <= int(self.last)


class WanLink(Strict):
    """The site's link to the core, as the lab's netem and the capacity model see it."""

    latency_ms: float = Field(ge=0, le=2000)
    jitter_ms: float = Field(default=0, ge=0, le=1000)
    loss_pct: float = Field(default=0, ge=0, le=100)
    bandwidth_mbit: float = Field(gt=0)


class Site(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    kind: SiteKind
    wan: WanLink
    lan_cidr: str | None = Field(default=None, description="The site's real network, for VPN gateways")
    cloud_zone: str | None = Field(
        default=None, pattern=r"^[a-z]{2}-[a-z]+-\d[a-z]$",
        description="Availability zone for a cloud_region site, e.g. ap-northeast-1a",
    )


class Placement(Strict):
    """Which sites run which service. The first site listed is the preferred primary."""

    pbx: list[Identifier] = Field(min_length=2)
    rtpengine: list[Identifier] = Field(min_length=1)
    redis: list[Identifier] = Field(min_length=2)
    postgresql: list[Identifier] = Field(min_length=2)
    dns: list[Identifier] = Field(min_length=1)

    def sites_for(self, service: Service) -> list[str]:
        return getattr(self, service.value)


class PortingState(StrEnum):
    PLANNED = "planned"
    FORWARDING = "forwarding"
    PORTED = "ported"
    VERIFIED = "verified"


class DidRange(Strict):
    first: PhoneNumber
    last: PhoneNumber
    porting: PortingState = PortingState.PLANNED
    porting_exceptions: dict[PhoneNumber, PortingState] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> DidRange:
        if len(self.first) != len(self.last) or int(self.first) > int(self.last):
            raise ValueError(f"DID range {self.first}..{self.last} is empty or mixes lengths")
        if int(self.last) - int(self.first) >= 100_000:
            raise ValueError("a DID range holds at most 100,000 numbers")
        return self

    def __contains__(self, number: str) -> bool:
        return len(number) == len(self.first) and int(self.first) <= int(number) <= int(self.last)

    def numbers(self) -> list[str]:
        width = len(self.first)
        return [str(n).zfill(width) for n in range(int(self.first), int(self.last) + 1)]

    def porting_of(self, number: str) -> PortingState:
        return self.porting_exceptions.get(number, self.porting)


class Trunk(Strict):
    id: Identifier
    carrier: str = Field(min_length=1)
    site: Identifier
    role: Literal["primary", "secondary"]
    channels: int = Field(default=30, ge=1, le=10_000)
    did_ranges: list[DidRange] = Field(min_length=1)


class Department(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    site: Identifier
    numbers: list[PhoneNumber] = Field(default_factory=list)


class Role(StrEnum):
    STAFF = "staff"
    MANAGER = "manager"
    OPERATOR = "operator"


class Device(StrEnum):
    SMARTPHONE = "smartphone"
    ISLAND_GROUP_PHONE = "island_group_phone"
    DESK_PHONE = "desk_phone"
    PA_GATEWAY = "pa_gateway"


class Staff(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    department: Identifier
    site: Identifier | None = Field(default=None, description="Defaults to the department's site")
    role: Role = Role.STAFF
    extension: Digits
    device: Device = Device.SMARTPHONE
    takes_phone_home: bool = False


class Strategy(StrEnum):
    SIMULTANEOUS = "simultaneous"  # 一斉着信
    SEQUENTIAL = "sequential"  # 第1着信, 第2着信, ...
    TIERED = "tiered"
    ROTATION = "rotation"  # 輪番, remembers who answered last
    LONGEST_IDLE = "longest_idle"


class Member(Strict):
    staff: Identifier
    order: int | None = Field(default=None, ge=1)
    tier: int | None = Field(default=None, ge=1)
    ring_seconds: int | None = Field(default=None, ge=1, le=600)


class OverflowStep(Strict):
    """One step of the chain a group follows when nobody answered in its ring limit.

    Exactly one of the fields is set: `group` rings another hunt group, `operator`
    rings the operators, `announcement` plays a named message, `reject` ends the call
    with that SIP status.
    """

    group: Identifier | None = None
    operator: Literal[True] | None = None
    announcement: Identifier | None = None
    reject: int | None = Field(default=None, ge=400, le=699)

    @model_validator(mode="after")
    def _exactly_one(self) -> OverflowStep:
        chosen = [k for k, v in self.model_dump().items() if v is not None]
        if len(chosen) != 1:
            raise ValueError(
                "an overflow step sets exactly one of group, operator, announcement, reject"
                f" (this one sets {', '.join(chosen) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.model_dump().items() if v is not None)


class AfterHoursAction(StrEnum):
    RING_HOME_PHONES = "ring_home_phones"  # only members who take their phone home ring
    OVERFLOW = "overflow"
    ANNOUNCEMENT = "announcement"
    REJECT = "reject"


class AfterHours(Strict):
    action: AfterHoursAction
    announcement: Identifier | None = None
    reject: int | None = Field(default=None, ge=400, le=699)

    @model_validator(mode="after")
    def _parameters_fit(self) -> AfterHours:
        if self.action is AfterHoursAction.ANNOUNCEMENT and not self.announcement:
            raise ValueError("action 'announcement' needs the announcement to play")
        if self.action is AfterHoursAction.REJECT and self.reject is None:
            raise ValueError("action 'reject' needs the SIP status to reject with")
        return self


class Recording(StrEnum):
    ALWAYS = "always"
    ON_DEMAND = "on_demand"
    NEVER = "never"


class HuntGroup(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    answers: str | None = Field(
        default=None,
        description="'representative' or a department id: whose published numbers ring this group",
    )
    pilot_extension: Digits | None = None
    strategy: Strategy
    members: list[Member] = Field(default_factory=list)
    ring_limit_seconds: int = Field(default=60, ge=1, le=3600)
    default_ring_seconds: int = Field(default=15, ge=1, le=600)
    skip_busy: bool = True
    overflow: list[OverflowStep] = Field(default_factory=list)
    schedule: Identifier = "default"
    after_hours: AfterHours = AfterHours(action=AfterHoursAction.OVERFLOW)
    answer_rate_target: float = Field(default=0.9, gt=0, le=1)
    calls_per_hour: float = Field(default=0, ge=0, description="Offered load at the busy hour")
    recording: Recording | None = None
    cdr_retention_years: int | None = Field(default=None, ge=1, le=30)


_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def _hours(value: object) -> tuple[time, time] | None:
    if value in ("closed", None):
        return None
    if not isinstance(value, str) or not (m := _HOURS.match(value)):
        raise ValueError(f"{value!r} is neither 'closed' nor HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"{value!r} is not a time of day")
    opens, closes = time(h1, m1), time(min(h2, 23), m2 if h2 < 24 else 59)
    if opens >= closes:
        raise ValueError(f"{value!r} closes before it opens")
    return opens, closes


OpeningHours = Annotated[tuple[time, time] | None, BeforeValidator(_hours)]
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def _month_day(value: object) -> str:
    if not isinstance(value, str) or not (m := _MONTH_DAY.match(value)):
        raise ValueError(f"{value!r} is not MM-DD")
    date(2024, int(m[1]), int(m[2]))  # 2024 is a leap year, so 02-29 is allowed
    return value


MonthDay = Annotated[str, AfterValidator(_month_day)]


class Schedule(Strict):
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], OpeningHours]
    national_holidays: bool = True
    # Municipal closed days by ordinance (地方自治法 4条の2); 12/29-1/3 is the usual range.
    closed_days: list[MonthDay] = Field(
        default_factory=lambda: ["12-29", "12-30", "12-31", "01-01", "01-02", "01-03"]
    )
    extra_closed_dates: list[date] = Field(default_factory=list)
    extra_open_dates: list[date] = Field(default_factory=list)


class CallerIdRule(Strict):
    """Who may present what outbound. Handsets never show their own mobile number."""

    role: Role | None = None
    department: Identifier | None = None
    may_present: list[str] = Field(min_length=1, description="'representative', 'department' or a DID")

    @model_validator(mode="after")
    def _one_subject(self) -> CallerIdRule:
        if (self.role is None) == (self.department is None):
            raise ValueError("a caller-ID rule names exactly one of role or department")
        return self


class CallerId(Strict):
    default: Literal["department", "representative"] = "department"
    rules: list[CallerIdRule] = Field(default_factory=list)


class Policies(Strict):
    recording: Recording = Recording.NEVER
    cdr_retention_years: int = Field(default=5, ge=1, le=30)


class Lab(Strict):
    """Where the rehearsal lab takes its addresses. The planner owns this range."""

    address_pool: str = "10.251.0.0/16"


class Estate(Strict):
    version: Literal[1] = 1
    municipality: Municipality
    numbering: NumberingPlan
    sites: list[Site] = Field(min_length=1)
    placement: Placement
    trunks: list[Trunk] = Field(min_length=1)
    departments: list[Department] = Field(min_length=1)
    staff: list[Staff] = Field(min_length=1)
    hunt_groups: list[HuntGroup] = Field(default_factory=list)
    schedules: dict[Identifier, Schedule]
    caller_id: CallerId = CallerId()
    policies: Policies = Policies()
    lab: Lab = Lab()

    _indexes: dict = PrivateAttr(default_factory=dict)

    # Lookups used by every derived view; built once, after validation.
    def site(self, site_id: str) -> Site:
        return self._index("sites")[site_id]

    def department(self, department_id: str) -> Department:
        return self._index("departments")[department_id]

    def person(self, staff_id: str) -> Staff:
        return self._index("staff")[staff_id]

    def group(self, group_id: str) -> HuntGroup:
        return self._index("hunt_groups")[group_id]

    def site_of(self, person: Staff) -> str:
        return person.site or self.department(person.department).site

    def _index(self, field: str) -> dict:
        if field not in self._indexes:
            self._indexes[field] = {item.id: item for item in getattr(self, field)}
        return self._indexes[field]

    def staff_at(self, site_id: str) -> list[Staff]:
        return [p for p in self.staff if self.site_of(p) == site_id]

    def sites_running(self, service: Service) -> list[Site]:
        return [self.site(s) for s in self.placement.sites_for(service)]

    def recording_of(self, group: HuntGroup) -> Recording:
        return group.recording or self.policies.recording

    def retention_of(self, group: HuntGroup) -> int:
        return group.cdr_retention_years or self.policies.cdr_retention_years


NumberingPlan.model_rebuild()
