"""The Locust side of the handset farm: commands out, outcomes back, as Locust requests.

The SIP work happens in the farm's pjsua2 workers; a Locust process only writes commands to
the farm's control stream and follows its event stream (one greenlet per process, XREAD
BLOCK on the farm's Redis, cooperative under gevent). Each call a Locust user places is
reported to Locust's statistics when its outcome is known, so Locust's live figures (and
its histograms, which the master merges across workers) show:

* `INVITE <kind>:<group or kind>`: RFC 6076 Session Request Delay in ms, a success at the
  first non-100 provisional response (or the 200 when none came), a failure at the final
  failure response (success and failure kept apart, as §4.3 requires);
* `ANSWER <kind>:<group>`: INVITE to 200 OK, for the calls that were answered;
* `REGISTER storm`: Registration Request Delay of the handsets a registration storm sent
  again (§4.1), and their Ineffective Registration Attempts as failures;
* `GENERATOR <what>`: calls the generator could not place (no free call slot in the farm's
  worker, an unknown handset): the generator's limits, kept apart from the PBX's figures.

The report's figures are not taken from here: they come from the farm's full event stream
joined with the PBX's CDRs after the run (tsunagu.storm.metrics). These live figures are
what Locust shows and writes to its CSV and HTML while the storm runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gevent

from simulator import events
from simulator.control import Farm, open_farm

OUTCOME_TIMEOUT_S = 30.0  # beyond a group's ring limit: no outcome at all is a failure


class CallFailed(Exception):
    pass


@dataclass
class Pending:
    kind: str
    name: str
    sent: float  # monotonic, when the command was written
    limit_s: float
    placed: float | None = None  # t of call_placed, from the worker that sent the INVITE
    call_id: str = ""
    alerted: bool = False


@dataclass
class FarmLink:
    """One per Locust process: the farm's client and the follower of its event stream."""

    farm: Farm
    fire: object  # environment.events.request.fire
    pending: dict[str, Pending] = field(default_factory=dict)
    by_call_id: dict[str, str] = field(default_factory=dict)
    watch_registrations_until: float = 0.0
    last_id: str = "$"
    # handsets on a call, by the event stream (handset -> its Call-IDs), and the ones a
    # command of ours is about to put on one, so a storm calls free handsets: the farm
    # answers every call, and a busy callee's 486 would be the generator's doing
    on_call: dict[str, set[str]] = field(default_factory=dict)
    reserved: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: str, environment) -> FarmLink:
        farm = open_farm(run_dir)
        if not farm.running():
            raise RuntimeError(f"the handset farm of {run_dir} is not running (tsunagu farm start)")
        link = cls(farm, environment.events.request.fire)
        info = farm.redis.xinfo_stream(events.STREAM)
        link.last_id = info["last-generated-id"]
        gevent.spawn(link._follow)
        gevent.spawn(link._reap)
        return link

    # --- commands -----------------------------------------------------------------------
    def place(self, op: str, kind: str, name: str, limit_s: float, **fields) -> str:
        request = self.farm.command(op, kind=kind, **fields)
        self.pending[request] = Pending(kind, name, time.monotonic(), limit_s + OUTCOME_TIMEOUT_S)
        self.reserved[request] = tuple(fields[k] for k in ("from", "to") if k in fields)
        return request

    def busy(self, handset: str) -> bool:
        return bool(self.on_call.get(handset)) or any(handset in r for r in self.reserved.values())

    def registration_storm(self, spread_s: float, watch_s: float) -> None:
        self.watch_registrations_until = time.monotonic() + spread_s + watch_s
        self.farm.reregister(spread_s)

    # --- outcomes -----------------------------------------------------------------------
    def _report(self, request_type: str, name: str, ms: float, error: str | None = None) -> None:
        self.fire(request_type=request_type, name=name, response_time=ms, response_length=0,
                  exception=CallFailed(error) if error else None, context={})

    def _follow(self) -> None:
        while True:
            try:
                got = self.farm.redis.xread({events.STREAM: self.last_id}, block=1000, count=2000)
            except Exception as exc:  # the farm stopped under us: say so once, then stop following
                self._report("GENERATOR", "farm event stream", 0, f"lost the farm's events: {exc}")
                return
            for _, entries in got:
                for entry_id, e in entries:
                    self.last_id = entry_id
                    self._handle(e)

    def _handle(self, e: dict[str, str]) -> None:
        kind = e["type"]
        request = e.get("request", "")
        if kind in ("call_placed", "invite_received"):
            self.on_call.setdefault(e["handset"], set()).add(e["call_id"])
        elif kind in ("bye", "call_failed", "rejected"):
            self.on_call.get(e.get("handset", ""), set()).discard(e.get("call_id", ""))
        if kind == "call_placed" and request in self.pending:
            p = self.pending[request]
            p.placed, p.call_id = float(e["t"]), e["call_id"]
            self.by_call_id[p.call_id] = request
        elif kind == "call_ringing":
            p = self.pending.get(self.by_call_id.get(e.get("call_id", ""), ""))
            if p and not p.alerted and p.placed is not None and e.get("status") != "100":
                p.alerted = True
                self._report("INVITE", p.name, (float(e["t"]) - p.placed) * 1000)
        elif kind == "call_connected" and request in self.pending:
            p = self._done(request)
            ms = (float(e["t"]) - p.placed) * 1000 if p.placed is not None else 0.0
            if not p.alerted:
                self._report("INVITE", p.name, ms)
            self._report("ANSWER", p.name, ms)
        elif kind == "call_failed" and request in self.pending:
            p = self._done(request)
            ms = (float(e["t"]) - p.placed) * 1000 if p.placed is not None else 0.0
            if not p.alerted:  # a failure after 180 is an unanswered call, not a failed request
                self._report("INVITE", p.name, ms, f"{e.get('status')} {e.get('reason', '')}".strip())
            else:
                self._report("ANSWER", p.name, ms, f"not answered: {e.get('status')} {e.get('reason', '')}")
        elif kind in ("command_failed", "refused_no_slot") and request in self.pending:
            p = self._done(request)
            self._report("GENERATOR", kind, 0, e.get("reason", kind))
        elif kind in ("registered", "register_failed") and time.monotonic() < self.watch_registrations_until:
            if kind == "registered":
                self._report("REGISTER", "storm", float(e.get("elapsed") or 0) * 1000)
            else:
                self._report("REGISTER", "storm", 0, f"{e.get('status')} {e.get('reason', '')}")

    def _done(self, request: str) -> Pending:
        self.reserved.pop(request, None)
        p = self.pending.pop(request)
        self.by_call_id.pop(p.call_id, None)
        return p

    def _reap(self) -> None:
        while True:
            gevent.sleep(1.0)  # the reaper's period, not a readiness wait
            now = time.monotonic()
            for request, p in list(self.pending.items()):
                if now - p.sent > p.limit_s:
                    self._done(request)
                    self._report("INVITE", p.name, (now - p.sent) * 1000, "no outcome from the farm")
