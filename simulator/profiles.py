"""How people answer their phones: one behaviour profile per role and device.

Every figure a profile gives is a distribution, and every draw comes from a random source
seeded by (farm seed, handset, what is being decided, call number), so a run with the same
seed makes the same decisions in the same order, whatever the process layout.

A smartphone is usually asleep: the PBX's INVITE first wakes it by push (a delay of its
own) before the person even sees the call. Outside business hours only people who take
their phone home answer (managers, in practice); everyone else lets it ring.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

ANSWER, NO_ANSWER, BUSY, DND = "answer", "no_answer", "busy", "dnd"
BUSY_STATUS, DND_STATUS = 486, 480


@dataclass(frozen=True)
class LogNormal:
    """A positive duration in seconds, given by its median and spread (sigma of the log)."""

    median_s: float
    sigma: float
    cap_s: float = 3600.0

    def draw(self, rng: random.Random) -> float:
        return min(self.cap_s, self.median_s * math.exp(rng.gauss(0.0, self.sigma)))


@dataclass(frozen=True)
class PushWake:
    asleep_probability: float
    min_s: float
    max_s: float

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.min_s, self.max_s) if rng.random() < self.asleep_probability else 0.0


@dataclass(frozen=True)
class Registration:
    """Expiry and retry figures: expiry drawn from [spread*E, E] so refreshes spread out,
    the first REGISTER within `first_within_s`, failover backoff as in RFC 5626 §4.5."""

    expires_s: int = 600
    spread: float = 0.7
    first_within_s: float = 10.0
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class Profile:
    name: str
    answer_delay: LogNormal
    push: PushWake | None
    no_answer: float
    busy: float
    dnd: float
    hold: LogNormal
    registration: Registration = Registration()


_NO_PUSH = None
PROFILES: dict[str, Profile] = {
    "smartphone": Profile("smartphone", LogNormal(4.0, 0.5, 60), PushWake(0.6, 0.5, 3.0),
                          no_answer=0.10, busy=0.05, dnd=0.02, hold=LogNormal(90, 0.8)),
    "smartphone-manager": Profile("smartphone-manager", LogNormal(6.0, 0.6, 60), PushWake(0.6, 0.5, 3.0),
                                  no_answer=0.15, busy=0.10, dnd=0.03, hold=LogNormal(120, 0.8)),
    "desk_phone": Profile("desk_phone", LogNormal(3.0, 0.4, 60), _NO_PUSH,
                          no_answer=0.05, busy=0.05, dnd=0.0, hold=LogNormal(60, 0.7)),
    "operator": Profile("operator", LogNormal(2.0, 0.3, 30), _NO_PUSH,
                        no_answer=0.01, busy=0.10, dnd=0.0, hold=LogNormal(25, 0.5)),
    "island_group_phone": Profile("island_group_phone", LogNormal(5.0, 0.5, 60), _NO_PUSH,
                                  no_answer=0.03, busy=0.05, dnd=0.0, hold=LogNormal(120, 0.8)),
    "pa_gateway": Profile("pa_gateway", LogNormal(0.2, 0.1, 2), _NO_PUSH,
                          no_answer=0.0, busy=0.0, dnd=0.0, hold=LogNormal(30, 0.3)),
    # A public phone on the carrier's side: answers quickly, always.
    "public": Profile("public", LogNormal(1.0, 0.2, 10), _NO_PUSH,
                      no_answer=0.0, busy=0.0, dnd=0.0, hold=LogNormal(30, 0.5)),
}


def profile_name(role: str, device: str) -> str:
    if role == "operator":
        return "operator"
    if device == "smartphone":
        return "smartphone-manager" if role == "manager" else "smartphone"
    return device


def rng_for(seed: int, extension: str, purpose: str, n: int = 0) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{extension}/{purpose}/{n}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Decision:
    action: str  # answer, no_answer, busy, dnd
    delay_s: float = 0.0  # INVITE to 200 OK (push wake-up included)
    hold_s: float = 0.0  # 200 OK to BYE
    reason: str = ""

    @property
    def status(self) -> int | None:
        return {BUSY: BUSY_STATUS, DND: DND_STATUS}.get(self.action)


def decide(profile: Profile, seed: int, extension: str, call_number: int, *, on_duty: bool,
           takes_phone_home: bool, forced: str | None = None, hold_scale: float = 1.0,
           realistic: bool = True) -> Decision:
    """What this person does with their `call_number`-th incoming call. With `realistic`
    off (functional checks) everyone on duty answers; forced states and duty still apply."""
    rng = rng_for(seed, extension, "call", call_number)
    push = profile.push.draw(rng) if profile.push else 0.0
    delay = push + profile.answer_delay.draw(rng)
    hold = profile.hold.draw(rng) * hold_scale
    roll = rng.random()
    if forced in (BUSY, DND):
        return Decision(forced, reason="set by control")
    if not on_duty and not takes_phone_home:
        return Decision(NO_ANSWER, reason="off duty")
    if not realistic:
        return Decision(ANSWER, delay, hold, "push wake-up" if push else "")
    if roll < profile.dnd:
        return Decision(DND, reason="do not disturb")
    if roll < profile.dnd + profile.busy:
        return Decision(BUSY, reason="busy")
    if roll < profile.dnd + profile.busy + profile.no_answer:
        return Decision(NO_ANSWER, reason="did not answer")
    return Decision(ANSWER, delay, hold, "push wake-up" if push else "")


def registration_plan(profile: Profile, seed: int, extension: str) -> tuple[float, int]:
    """(seconds before the first REGISTER, expiry asked for)."""
    reg = profile.registration
    rng = rng_for(seed, extension, "register")
    expires = round(reg.expires_s * rng.uniform(reg.spread, 1.0))
    return rng.uniform(0.0, reg.first_within_s), max(60, expires)


def on_duty(open_intervals: list[tuple[float, float]], now_epoch: float) -> bool:
    """Business hours as [start, end) epoch intervals computed by the supervisor from the
    estate's schedule (tsunagu.calendar), so workers need not load the estate."""
    return any(a <= now_epoch < b for a, b in open_intervals)
