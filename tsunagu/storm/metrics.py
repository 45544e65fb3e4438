"""A call storm's figures: RFC 6076 metrics and hunt-group metrics, from the farm's events and the PBX's CDRs.

Inputs: the handset farm's event stream (`simulator/events.py`: flat string fields, `t` in
CLOCK_MONOTONIC seconds comparable between the farm's processes, `wall` in epoch seconds)
and the PBX's `tsunagu_cdr` rows. Caller, callee and CDR share the SIP Call-ID (Kamailio
is a proxy, not a B2BUA), which is how a call's three views are joined. Every duration is
taken between two `t`s, never between `wall`s; `wall` only places events on the timeline.

RFC 6076 metrics (measured at the originating UA, i.e. the handset that placed the call):

- §4.1 RRD: `registered.elapsed` (REGISTER sent to its 200, challenge round trip included),
  successful registrations only, in ms.
- §4.2 IRA % = register_failed / register_sent x 100. A response is paired with the
  handset's outstanding `register_sent`; 401/407 challenges never count as failures and a
  `registered` with nothing outstanding (pjsip's own refresh) is no attempt.
- §4.3 SRD, success and failure never mixed, each call in at most one: success = INVITE
  (call_placed) to the first non-100 provisional (call_ringing), or to the 200
  (call_connected) if none came; the setup is a success from that response on, whatever
  the call did next. Failure = INVITE to the failure response (call_failed) of a call that
  got neither; a 3xx (a redirect, not a failure) and a 487 after the caller's own CANCEL
  (it times the caller, not the setup) are left out.
- §4.4 SDD: `bye.sdd` (our BYE to its final response) from the side that sent the BYE,
  in ms; a BYE answered by 408 (timed out) is the failed-SDD case and left out.
- §4.5 SDT: the caller's `bye.duration` (200 OK to BYE), in seconds.
- §4.6 SER = connected / (attempts - 3xx) x 100.
- §4.7 SEER = (connected + failures with 480, 486, 600, 603) / (attempts - 3xx) x 100.
- §4.8 ISA % = failures with 408, 500, 503, 504 / attempts x 100.
- §4.9 SCR = sessions connected and ended by a BYE from either side (not one answered by
  408: the dialog died of a missing response) / attempts x 100.

Counts and ratios are given overall and per kind of call (citizen, staff, outbound: the
generator's `call_placed.kind`, else inferred: a carrier phone calls as a citizen; a staff
extension calling an extension is staff, anything else outbound). `unresolved` counts
attempts with neither a connect nor a failure (still up, or lost, when the window closed).

Hunt-group metrics, for each call the CDR (or else `call_placed.group`) gives a group:

- offered: every call either side attributes to the group, joined by Call-ID: at least the
  larger of the CDR's and the generator's counts (calls lost before the PBX, and calls the
  farm did not place, are both offered).
- answered: the CDR says answered or the caller connected (an overflow target answering
  counts: the citizen was answered). abandoned: not answered, and the CDR says abandoned
  or the caller cancelled (487). failed: any other ending. overflowed: the CDR names an
  overflow step. Rates are fractions of offered.
- pbx_processing_ms: CDR `first_branch_ms` (INVITE in to first branch relayed).
- first_alert_ms: call_placed to the first member's invite_received (farm side).
- fork_spread_ms: first to last invite_received among the members alerted in the group's
  first step, for calls where at least two were: every member for `simultaneous`; for the
  other strategies the invites within 100 ms of the first (a step's members are alerted
  together; the next step comes seconds later), so sequential groups report none.
- time_to_answer_ms: call_placed to call_connected.
- Erlang C (see erlang.py): agents = members, AHT = mean SDT of the group's answered calls
  (120 s when none), offered erlangs = offered / window seconds x AHT, t = the service-level
  target. Measured: the fraction of offered calls answered within t (time to answer, or
  the CDR's answer_ms for calls the farm did not place) and the mean time to answer.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import erlang
from .histogram import Histogram

KINDS = ("citizen", "staff", "outbound")
SEER_STATUSES = frozenset({480, 486, 600, 603})
ISA_STATUSES = frozenset({408, 500, 503, 504})
CANCELLED = 487
TIMEOUT = 408
CHALLENGES = frozenset({401, 407})
STEP_WINDOW_S = 0.100  # invites this close to the first one belong to the same hunt step
DEFAULT_AHT_S = 120.0
CDR_FIELDS = ("call_id", "node", "started_at", "caller", "dialled", "hunt_group", "overflow", "alerted",
              "answered_by", "first_alert_ms", "answer_ms", "result", "status", "first_branch_ms")
HUNT_HISTOGRAMS = ("pbx_processing_ms", "first_alert_ms", "fork_spread_ms", "time_to_answer_ms", "srd_success_ms")
# the events that are traffic: worker and farm life cycle events do not widen the window
TRAFFIC = frozenset({"register_sent", "registered", "register_failed", "call_placed", "call_ringing",
                     "call_connected", "call_failed", "bye", "invite_received", "ringing_sent", "answered",
                     "rejected"})


def _num(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _status(value) -> int | None:
    n = _num(value)
    return int(n) if n is not None else None


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole > 0 else None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


# --- the calls, as their caller and callees saw them -------------------------------------

@dataclass
class Call:
    call_id: str
    handset: str
    kind: str
    group: str
    placed_t: float
    ringing_t: float | None = None
    connected_t: float | None = None
    failed_t: float | None = None
    failed_status: int | None = None
    sdt_s: float | None = None
    bye_status: int | None = None
    sdd_ms: float | None = None
    invites: dict[str, float] = field(default_factory=dict)  # callee handset -> first invite_received t

    @property
    def redirected(self) -> bool:
        return self.connected_t is None and self.failed_status is not None and 300 <= self.failed_status < 400

    @property
    def srd_success_ms(self) -> float | None:
        responded = self.ringing_t if self.ringing_t is not None else self.connected_t
        return None if responded is None else max(0.0, responded - self.placed_t) * 1000

    @property
    def srd_failure_ms(self) -> float | None:
        if self.ringing_t is not None or self.connected_t is not None or self.failed_t is None:
            return None
        if self.redirected or self.failed_status == CANCELLED:
            return None
        return max(0.0, self.failed_t - self.placed_t) * 1000

    @property
    def time_to_answer_ms(self) -> float | None:
        return None if self.connected_t is None else max(0.0, self.connected_t - self.placed_t) * 1000

    @property
    def completed(self) -> bool:
        return self.connected_t is not None and self.sdt_s is not None and self.bye_status != TIMEOUT


def _kind(placed: dict, extension_length: int) -> str:
    if placed.get("kind") in KINDS:
        return placed["kind"]

    def is_extension(number: str) -> bool:
        return number.isdigit() and len(number) == extension_length

    if not is_extension(placed.get("handset", "")):
        return "citizen"  # a carrier phone: the public calling in
    return "staff" if is_extension(placed.get("peer", "")) else "outbound"


def _calls(events: list[dict], extension_length: int) -> dict[str, Call]:
    calls: dict[str, Call] = {}
    for e in events:
        if e["type"] == "call_placed" and e.get("call_id") and e["call_id"] not in calls:
            calls[e["call_id"]] = Call(e["call_id"], e.get("handset", ""), _kind(e, extension_length),
                                       e.get("group", ""), float(e["t"]))
    for e in events:
        call = calls.get(e.get("call_id", ""))
        if call is not None and e["type"] != "call_placed":
            _apply(call, e)
    return calls


def _apply(call: Call, e: dict) -> None:
    kind, t = e["type"], float(e["t"])
    caller = e.get("handset") == call.handset
    if kind == "call_ringing":
        status = _status(e.get("status"))
        if call.ringing_t is None and (status is None or 100 < status < 200):
            call.ringing_t = t
    elif kind == "call_connected" and call.connected_t is None:
        call.connected_t = t
    elif kind == "call_failed" and e.get("direction", "out") != "in" and caller and call.failed_t is None:
        call.failed_t, call.failed_status = t, _status(e.get("status"))
    elif kind == "invite_received":
        call.invites.setdefault(e.get("handset", ""), t)
    elif kind == "bye":
        _apply_bye(call, e, caller)


def _apply_bye(call: Call, e: dict, caller: bool) -> None:
    status = _status(e.get("status"))
    if caller and call.sdt_s is None:
        call.sdt_s, call.bye_status = _num(e.get("duration")), status
    sdd = _num(e.get("sdd"))
    if e.get("by") == "local" and sdd is not None and status != TIMEOUT and call.sdd_ms is None:
        call.sdd_ms = sdd


# --- RFC 6076 session metrics -------------------------------------------------------------

def _record(h: Histogram, value: float | None) -> None:
    if value is not None:
        h.record(value)


SESSION_COUNTS = ("attempts", "redirected", "connected", "effective", "ineffective", "completed", "unresolved")
SESSION_HISTOGRAMS = ("srd_success_ms", "srd_failure_ms", "sdd_ms", "sdt_s")


def _session_tally(calls: Iterable[Call]) -> tuple[dict[str, int], dict[str, Histogram]]:
    n = dict.fromkeys(SESSION_COUNTS, 0)
    hists = {k: Histogram() for k in SESSION_HISTOGRAMS}
    for c in calls:
        failed = c.connected_t is None and c.failed_status is not None
        n["attempts"] += 1
        n["redirected"] += c.redirected
        n["connected"] += c.connected_t is not None
        n["effective"] += c.connected_t is not None or (failed and c.failed_status in SEER_STATUSES)
        n["ineffective"] += failed and c.failed_status in ISA_STATUSES
        n["completed"] += c.completed
        n["unresolved"] += c.connected_t is None and c.failed_status is None
        _record(hists["srd_success_ms"], c.srd_success_ms)
        _record(hists["srd_failure_ms"], c.srd_failure_ms)
        _record(hists["sdd_ms"], c.sdd_ms)
        _record(hists["sdt_s"], c.sdt_s if c.connected_t is not None else None)
    return n, hists


def _session_figures(n: dict[str, int], hists: dict[str, Histogram]) -> dict:
    established = n["attempts"] - n["redirected"]
    return {**n,
            "ser_percent": _pct(n["connected"], established),
            "seer_percent": _pct(n["effective"], established),
            "isa_percent": _pct(n["ineffective"], n["attempts"]),
            "scr_percent": _pct(n["completed"], n["attempts"]),
            **{k: h.summary() for k, h in hists.items()}}


def sessions(calls: dict[str, Call]) -> dict:
    """RFC 6076 session figures overall and by kind of call (the overall ones are the kinds' merged)."""
    tallies = {k: _session_tally(c for c in calls.values() if c.kind == k) for k in KINDS}
    total = {k: sum(n[k] for n, _ in tallies.values()) for k in SESSION_COUNTS}
    merged = {k: Histogram.merged(h[k] for _, h in tallies.values()) for k in SESSION_HISTOGRAMS}
    return {**_session_figures(total, merged), "by_kind": {k: _session_figures(*t) for k, t in tallies.items()}}


# --- registration -------------------------------------------------------------------------

def _registrations(events: list[dict]) -> tuple[dict, list[tuple[float, str]]]:
    """The registration figures, and (wall, outcome) of each answered attempt for the timeline."""
    outstanding: dict[str, float] = {}  # handset -> t of its unanswered register_sent
    rrd, outcomes = Histogram(), []
    attempts = successes = ineffective = 0
    for e in events:
        kind, handset = e["type"], e.get("handset", "")
        if kind == "register_sent":
            attempts += 1
            outstanding[handset] = float(e["t"])
        elif kind == "registered" and handset in outstanding:
            sent = outstanding.pop(handset)
            elapsed = _num(e.get("elapsed"))
            rrd.record(1000 * (elapsed if elapsed is not None else float(e["t"]) - sent))
            successes += 1
            outcomes.append((float(e["wall"]), "registered"))
        elif kind == "register_failed" and handset in outstanding and _status(e.get("status")) not in CHALLENGES:
            outstanding.pop(handset)
            ineffective += 1
            outcomes.append((float(e["wall"]), "register_failed"))
    figures = {"attempts": attempts, "successes": successes, "ineffective": ineffective,
               "ira_percent": _pct(ineffective, attempts), "rrd_ms": rrd.summary()}
    return figures, outcomes


# --- hunt groups --------------------------------------------------------------------------

def _started(row: dict) -> tuple[float, str]:
    text = row.get("started_at") or ""
    try:
        return datetime.fromisoformat(text).timestamp(), text
    except ValueError:
        return math.inf, text


def dedupe_cdrs(cdrs: Iterable[dict]) -> dict[str, dict]:
    """One row per call: a call that crossed two PBX nodes has a row on each; the one that
    names the hunt group (else the earliest) is the one that routed it."""
    best: dict[str, dict] = {}
    for row in cdrs:
        cid = row.get("call_id") or ""
        key = (not row.get("hunt_group"), _started(row))
        if cid and (cid not in best or key < (not best[cid].get("hunt_group"), _started(best[cid]))):
            best[cid] = row
    return best


@dataclass
class GroupTally:
    offered: int = 0
    answered: int = 0
    overflowed: int = 0
    abandoned: int = 0
    failed: int = 0
    within_t: int = 0
    hists: dict[str, Histogram] = field(default_factory=lambda: {k: Histogram() for k in HUNT_HISTOGRAMS})
    sdt: Histogram = field(default_factory=Histogram)

    def counts(self) -> dict:
        return {"offered": self.offered, "answered": self.answered, "overflowed": self.overflowed,
                "abandoned": self.abandoned, "failed": self.failed,
                "answer_rate": _ratio(self.answered, self.offered),
                "overflow_rate": _ratio(self.overflowed, self.offered),
                "abandoned_rate": _ratio(self.abandoned, self.offered)}


def _outcome(cdr: dict | None, call: Call | None) -> str | None:
    result = (cdr or {}).get("result") or ""
    if result == "answered" or (call is not None and call.connected_t is not None):
        return "answered"
    if result == "abandoned" or (call is not None and call.failed_status == CANCELLED):
        return "abandoned"
    if result or (call is not None and call.failed_status is not None):
        return "failed"
    return None


def _fork_spread_ms(invites: list[float], strategy: str) -> float | None:
    invites = sorted(invites)
    if strategy != "simultaneous":
        invites = [t for t in invites if t - invites[0] <= STEP_WINDOW_S] if invites else []
    return (invites[-1] - invites[0]) * 1000 if len(invites) >= 2 else None


def _tally(tally: GroupTally, cdr: dict | None, call: Call | None, members: set[str], strategy: str,
           t_s: float) -> None:
    outcome = _outcome(cdr, call)
    tally.offered += 1
    tally.answered += outcome == "answered"
    tally.abandoned += outcome == "abandoned"
    tally.failed += outcome == "failed"
    tally.overflowed += bool((cdr or {}).get("overflow"))
    _record(tally.hists["pbx_processing_ms"], _num((cdr or {}).get("first_branch_ms")))
    answer_ms = call.time_to_answer_ms if call is not None else None
    if call is not None:
        member_invites = [t for h, t in call.invites.items() if h in members]
        if member_invites:
            tally.hists["first_alert_ms"].record(max(0.0, min(member_invites) - call.placed_t) * 1000)
        _record(tally.hists["fork_spread_ms"], _fork_spread_ms(member_invites, strategy))
        _record(tally.hists["time_to_answer_ms"], answer_ms)
        _record(tally.hists["srd_success_ms"], call.srd_success_ms)
        if outcome == "answered":
            _record(tally.sdt, call.sdt_s)
    if outcome == "answered":
        if answer_ms is None:
            answer_ms = _num((cdr or {}).get("answer_ms"))
        tally.within_t += answer_ms is not None and answer_ms <= t_s * 1000


def _erlang(tally: GroupTally, agents: int, window_s: float, t_s: float) -> dict:
    aht = tally.sdt.mean if tally.sdt.count else DEFAULT_AHT_S
    load = tally.offered / window_s * aht if window_s > 0 else 0.0
    predictable = tally.offered > 0 and agents > 0 and window_s > 0
    asa = erlang.asa_s(agents, load, aht) if predictable else None
    tta = tally.hists["time_to_answer_ms"].mean
    return {"agents": agents, "offered_erlangs": load, "aht_s": aht, "t_s": t_s,
            "predicted_service_level": erlang.service_level(agents, load, aht, t_s) if predictable else None,
            "predicted_asa_s": asa if asa is not None and math.isfinite(asa) else None,
            "measured_service_level": _ratio(tally.within_t, tally.offered),
            "measured_asa_s": tta / 1000 if tta is not None else None}


def _members(estate, gid: str) -> tuple[dict, set[str]]:
    """(name, strategy, members count) and the member extensions of a group."""
    try:
        group = estate.group(gid)
    except KeyError:  # a group the CDRs name but this estate does not have
        return {"name": gid, "strategy": "", "members": 0}, set()
    extensions = {estate.person(m.staff).extension for m in group.members}
    info = {"name": group.name, "strategy": str(group.strategy), "members": len(group.members)}
    return info, extensions


def hunt_groups(estate, calls: dict[str, Call], cdrs: dict[str, dict], window_s: float,
                t_s: float) -> tuple[dict, dict]:
    gids = [g.id for g in estate.hunt_groups]
    by_call: dict[str, str] = {}
    for cid in cdrs.keys() | calls.keys():
        gid = (cdrs.get(cid) or {}).get("hunt_group") or (calls[cid].group if cid in calls else "")
        if gid:
            by_call[cid] = gid
    gids += sorted(set(by_call.values()) - set(gids))
    tallies = {gid: GroupTally() for gid in gids}
    info = {gid: _members(estate, gid) for gid in gids}
    for cid, gid in sorted(by_call.items()):
        _tally(tallies[gid], cdrs.get(cid), calls.get(cid), info[gid][1], info[gid][0]["strategy"], t_s)
    groups = {}
    for gid in gids:
        tally, (meta, _) = tallies[gid], info[gid]
        target = estate.group(gid).answer_rate_target if meta["strategy"] else None
        groups[gid] = {**meta, **tally.counts(), "answer_rate_target": target,
                       **{k: h.summary() for k, h in tally.hists.items()},
                       "erlang_c": _erlang(tally, meta["members"], window_s, t_s)}
    overall = GroupTally()
    for tally in tallies.values():
        for k in ("offered", "answered", "overflowed", "abandoned", "failed"):
            setattr(overall, k, getattr(overall, k) + getattr(tally, k))
        for k in HUNT_HISTOGRAMS:
            overall.hists[k].merge(tally.hists[k])
    return groups, {**overall.counts(), **{k: h.summary() for k, h in overall.hists.items()}}


# --- window and timeline ------------------------------------------------------------------

def _window(events: list[dict]) -> dict:
    walls = [float(e["wall"]) for e in events if e["type"] in TRAFFIC] or [float(e["wall"]) for e in events]
    start, end = (min(walls), max(walls)) if walls else (0.0, 0.0)
    return {"start_wall": start, "end_wall": end, "seconds": end - start}


def _timeline(events: list[dict], calls: dict[str, Call], registrations: list[tuple[float, str]],
              window: dict) -> list[dict]:
    seconds = int(window["seconds"]) + 1 if window["seconds"] or events else 0
    rows = [{"second": s, "attempts": 0, "connected": 0, "failed": 0, "registered": 0, "register_failed": 0}
            for s in range(seconds)]

    def count(wall: float, column: str) -> None:
        rows[min(seconds - 1, max(0, int(wall - window["start_wall"])))][column] += 1

    for e in events:
        call = calls.get(e.get("call_id", ""))
        if call is None or e.get("handset") != call.handset:
            continue
        if e["type"] == "call_placed":
            count(float(e["wall"]), "attempts")
        elif e["type"] == "call_connected":
            count(float(e["wall"]), "connected")
        elif e["type"] == "call_failed" and e.get("direction", "out") != "in":
            count(float(e["wall"]), "failed")
    for wall, outcome in registrations:
        count(wall, outcome)
    return rows


def _curve(timeline: list[dict]) -> list[list[int]]:
    total, out = 0, []
    for row in timeline:
        total += row["registered"]
        out.append([row["second"], total])
    return out


# --- entry points -------------------------------------------------------------------------

def compute(events: Iterable[dict], cdrs: Iterable[dict], estate, *, service_level_s: float = 20.0) -> dict:
    """Every figure of a storm as one JSON-serialisable dict: window, registration, sessions
    (with by_kind), groups, hunt_overall, timeline; each latency as a Histogram summary."""
    # workers flush in batches, so the stream is only roughly in time order
    events = sorted((e for e in events if e.get("type") and e.get("t") not in (None, "")), key=lambda e: float(e["t"]))
    window = _window(events)
    calls = _calls(events, estate.numbering.extension_length)
    registration, outcomes = _registrations(events)
    timeline = _timeline(events, calls, outcomes, window)
    groups, overall = hunt_groups(estate, calls, dedupe_cdrs(cdrs), window["seconds"], service_level_s)
    return {"window": window,
            "registration": {**registration, "curve": _curve(timeline)},
            "sessions": sessions(calls),
            "groups": groups,
            "hunt_overall": overall,
            "timeline": timeline}


def load_events(path: str | Path) -> list[dict]:
    """Events as JSON lines (what `tsunagu farm events` prints)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_cdrs(path: str | Path) -> list[dict]:
    """CDR rows from CSV with a header row (psql `\\copy ... TO ... CSV HEADER`); empty fields become None."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    from ..estate import load_estate

    parser = argparse.ArgumentParser(prog="python -m tsunagu.storm.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("events", help="the farm's events, JSON lines")
    parser.add_argument("cdrs", help="tsunagu_cdr rows, CSV with a header")
    parser.add_argument("estate", help="the estate file")
    parser.add_argument("--service-level-s", type=float, default=20.0, help="Erlang C answer target (seconds)")
    args = parser.parse_args(argv)
    figures = compute(load_events(args.events), load_cdrs(args.cdrs), load_estate(args.estate),
                      service_level_s=args.service_level_s)
    json.dump(figures, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
