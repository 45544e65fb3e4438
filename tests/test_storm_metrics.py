"""Storm metrics: RFC 6076 figures and hunt-group figures from a synthetic event stream and CDRs.

One storm on the tiny estate exercises every metric. Its calls (seconds after the start):

  A  citizen -> daihyo (simultaneous), members alerted 30 ms apart, answered, caller hangs up
  B  citizen -> soumu (group from the CDR only; kind inferred), 486 without ringing
  C  staff 2002 -> 2004 (kind inferred), 503 without ringing
  D  outbound 2001 -> public number, timeout (408)
  E  citizen, redirected (302)
  F  citizen -> shimin (rotation), rings, 480 after overflow; two CDR rows (two PBX nodes)
  G  citizen -> soumu, rings, the caller gives up (487; CDR abandoned)
  H  staff 2003 -> soumu's pilot, answered by 2002, who hangs up
  I  outbound, answered, the BYE times out (408)
  J  citizen -> daihyo, no outcome when the window closes (the last event, at 100 s)
  K  daihyo call the PBX saw but the farm did not place (CDR only), answered after 25 s
  L  staff -> kikaku (tiered): tier 1 alerted 60 ms apart, tier 2 four seconds later answers
"""

from __future__ import annotations

import json
import math
import random

import pytest

from simulator.events import problems
from tsunagu.estate import load_estate
from tsunagu.storm import erlang, metrics
from tsunagu.storm.histogram import Histogram

from .conftest import TINY

T0, WALL0 = 5000.0, 1_750_000_000.0
CITIZEN, PUBLIC = "0450019999", "0350010001"


class Stream:
    def __init__(self):
        self.events: list[dict] = [self.event("worker_started", -100, pid=1)]  # outside the window

    def event(self, type_: str, at: float, /, **fields) -> dict:
        e = {"type": type_, "t": f"{T0 + at:.6f}", "wall": f"{WALL0 + at:.6f}", "worker": "w1",
             **{k: str(v) for k, v in fields.items()}}
        assert problems(e) == [], problems(e)
        return e

    def add(self, type_: str, at: float, /, **fields) -> Stream:
        self.events.append(self.event(type_, at, **fields))
        return self

    def placed(self, cid, at, handset, peer, kind="", group=""):
        return self.add("call_placed", at, handset=handset, call_id=cid, peer=peer, request=f"r{cid}", kind=kind,
                        group=group)

    def ringing(self, cid, at, handset, status=180):
        return self.add("call_ringing", at, handset=handset, call_id=cid, status=status)

    def connected(self, cid, at, handset):
        return self.add("call_connected", at, handset=handset, call_id=cid)

    def failed(self, cid, at, handset, status):
        return self.add("call_failed", at, handset=handset, call_id=cid, status=status, reason="x", direction="out")

    def bye(self, cid, at, handset, duration, by, status=200, sdd=""):
        return self.add("bye", at, handset=handset, call_id=cid, status=status, duration=duration, by=by, sdd=sdd)

    def invite(self, cid, at, handset, peer):
        return self.add("invite_received", at, handset=handset, call_id=cid, peer=peer)


def cdr(call_id, group="", result="answered", **fields) -> dict:
    row = dict.fromkeys(metrics.CDR_FIELDS)
    row.update(call_id=call_id, node="pbx-dc-east", started_at="2025-06-15 10:00:00+09", hunt_group=group or None,
               result=result)
    row.update(fields)
    return row


def storm() -> tuple[list[dict], list[dict]]:
    s = Stream()
    # registrations: a challenge is no failure; a timeout is; a refresh with nothing sent is no attempt
    s.add("register_sent", 0.0, handset="2000", target="pbx1")
    s.add("register_failed", 0.010, handset="2000", target="pbx1", status=401)
    s.add("registered", 0.025, handset="2000", target="pbx1", expires=600, elapsed="0.025")
    s.add("register_sent", 0.5, handset="2001", target="pbx1")
    s.add("register_failed", 32.5, handset="2001", target="pbx1", status=408)
    s.add("register_sent", 33.0, handset="2001", target="pbx2")
    s.add("registered", 33.04, handset="2001", target="pbx2", expires=600, elapsed="0.040")
    s.add("register_sent", 1.0, handset="2003", target="pbx1")
    s.add("registered", 1.01, handset="2003", target="pbx1", expires=600, elapsed="0.010")
    s.add("registered", 60.0, handset="2002", target="pbx1", expires=600, elapsed="900.0", refresh=1)

    s.placed("A", 0.0, CITIZEN, "0736772511", "citizen", "daihyo")
    s.ringing("A", 0.010, CITIZEN, status=100)  # not a status-indicative response
    s.invite("A", 0.050, "2000", CITIZEN).invite("A", 0.080, "2001", CITIZEN)
    s.ringing("A", 0.120, CITIZEN).connected("A", 2.0, CITIZEN)
    s.bye("A", 32.0, CITIZEN, "30.000", "local", sdd="4.5").bye("A", 32.0, "2000", "30.000", "remote")

    s.placed("B", 1.0, CITIZEN, "0736772520").failed("B", 1.2, CITIZEN, 486)
    s.placed("C", 5.0, "2002", "2004").failed("C", 5.5, "2002", 503)
    s.placed("D", 6.0, "2001", PUBLIC, "outbound").failed("D", 38.0, "2001", 408)
    s.placed("E", 7.0, CITIZEN, "0736772599", "citizen").failed("E", 7.1, CITIZEN, 302)

    s.placed("F", 8.0, CITIZEN, "0736772530", "citizen", "shimin")
    s.invite("F", 8.2, "2004", CITIZEN).ringing("F", 8.3, CITIZEN).invite("F", 18.2, "2005", CITIZEN)
    s.failed("F", 38.0, CITIZEN, 480)

    s.placed("G", 40.0, CITIZEN, "0736772520", "citizen", "soumu")
    s.invite("G", 40.1, "2002", CITIZEN).ringing("G", 40.15, CITIZEN).failed("G", 45.0, CITIZEN, 487)

    s.placed("H", 50.0, "2003", "2900", "staff", "soumu")
    s.invite("H", 50.04, "2002", "2003").ringing("H", 50.1, "2003").connected("H", 53.0, "2003")
    s.bye("H", 63.0, "2002", "10.000", "local", sdd="6.0").bye("H", 63.0, "2003", "10.000", "remote")

    s.placed("I", 70.0, "2005", PUBLIC, "outbound").ringing("I", 70.4, "2005", status=183)
    s.connected("I", 71.0, "2005").bye("I", 76.0, "2005", "5.000", "local", status=408, sdd="32000")

    s.placed("L", 80.0, "2005", "2901", "staff", "kikaku")
    s.invite("L", 80.02, "2002", "2005").invite("L", 80.08, "2003", "2005").invite("L", 84.02, "2004", "2005")
    s.ringing("L", 80.1, "2005").connected("L", 84.5, "2005")
    s.bye("L", 94.5, "2005", "10.000", "remote").bye("L", 94.5, "2004", "10.000", "local", sdd="3.0")

    s.placed("J", 100.0, CITIZEN, "0736772511", "citizen", "daihyo")

    cdrs = [
        cdr("A", "daihyo", first_branch_ms="3", answer_ms="1990", answered_by="2000"),
        cdr("B", "soumu", "failed", status="486", first_branch_ms="2"),
        # F crossed both nodes: the row that names the group routed it, even though it started later
        cdr("F", "shimin", "failed", status="480", first_branch_ms="7", overflow="announcement:closed",
            node="pbx-dc-west", started_at="2025-06-15 10:00:08.5+09"),
        cdr("F", None, "failed", status="480", first_branch_ms="99", started_at="2025-06-15 10:00:08+09"),
        cdr("G", "soumu", "abandoned", status="487", first_branch_ms="5"),
        cdr("H", "soumu", first_branch_ms="4", answer_ms="2950"),
        cdr("K", "daihyo", answer_ms="25000", first_branch_ms=""),
        cdr("L", "kikaku", first_branch_ms="1", answer_ms="4480"),
    ]
    events = s.events[:]
    random.Random(7).shuffle(events)  # workers flush in batches: the stream is not in time order
    return events, cdrs


@pytest.fixture(scope="module")
def estate():
    return load_estate(TINY)


@pytest.fixture(scope="module")
def figures(estate):
    events, cdrs = storm()
    return metrics.compute(events, cdrs, estate)


def expect(summary: dict, values: list[float]) -> None:
    """A summary is the one a histogram of exactly these values gives (floats to 1e-6)."""
    want = Histogram()
    for v in values:
        want.record(v)
    want = want.summary()
    assert summary["count"] == want["count"] == len(values)
    for key in ("mean", "p50", "p95", "p99", "max"):
        if want[key] is None:
            assert summary[key] is None
        else:
            assert summary[key] == pytest.approx(want[key], abs=1e-6), key
    assert summary["histogram"]["count"] == len(values)


def test_result_is_plain_json(figures):
    assert json.loads(json.dumps(figures, allow_nan=False)) == figures


def test_window_spans_traffic_only(figures):
    assert figures["window"]["start_wall"] == WALL0
    assert figures["window"]["end_wall"] == WALL0 + 100
    assert figures["window"]["seconds"] == 100


def test_registration(figures):
    reg = figures["registration"]
    assert (reg["attempts"], reg["successes"], reg["ineffective"]) == (4, 3, 1)
    assert reg["ira_percent"] == 25.0
    expect(reg["rrd_ms"], [25.0, 40.0, 10.0])
    assert reg["curve"][0] == [0, 1] and reg["curve"][1] == [1, 2]
    assert reg["curve"][32] == [32, 2] and reg["curve"][33] == [33, 3]
    assert reg["curve"][-1] == [100, 3] and len(reg["curve"]) == 101


def test_session_counts_and_ratios(figures):
    s = figures["sessions"]
    assert {k: s[k] for k in ("attempts", "redirected", "connected", "effective", "ineffective", "completed",
                              "unresolved")} == {"attempts": 11, "redirected": 1, "connected": 4, "effective": 6,
                                                 "ineffective": 2, "completed": 3, "unresolved": 1}
    assert s["ser_percent"] == pytest.approx(40.0)  # 4 / (11 - 1)
    assert s["seer_percent"] == pytest.approx(60.0)  # (4 + 486 + 480) / 10
    assert s["isa_percent"] == pytest.approx(200 / 11)  # 503 and 408
    assert s["scr_percent"] == pytest.approx(300 / 11)  # A, H, L; not I, whose BYE timed out


def test_session_request_delay_keeps_success_and_failure_apart(figures):
    s = figures["sessions"]
    # to the first non-100 provisional (A's 100 Trying ignored; I's 183 counts); F and G rang, then failed
    expect(s["srd_success_ms"], [120, 300, 150, 100, 400, 100])
    # B 486, C 503, D 408; E (302) and the failures that had rung are not here
    expect(s["srd_failure_ms"], [200, 500, 32000])


def test_disconnect_delay_and_duration(figures):
    s = figures["sessions"]
    expect(s["sdd_ms"], [4.5, 6.0, 3.0])  # from whichever side sent the BYE; I's timed-out BYE left out
    expect(s["sdt_s"], [30.0, 10.0, 5.0, 10.0])


def test_sessions_by_kind(figures):
    by = figures["sessions"]["by_kind"]
    assert set(by) == {"citizen", "staff", "outbound"}
    assert (by["citizen"]["attempts"], by["citizen"]["redirected"], by["citizen"]["connected"]) == (6, 1, 1)
    assert by["citizen"]["ser_percent"] == pytest.approx(20.0)
    assert by["citizen"]["seer_percent"] == pytest.approx(60.0)
    assert (by["staff"]["attempts"], by["staff"]["connected"], by["staff"]["ineffective"]) == (3, 2, 1)
    assert by["staff"]["isa_percent"] == pytest.approx(100 / 3)
    assert (by["outbound"]["attempts"], by["outbound"]["completed"], by["outbound"]["scr_percent"]) == (2, 0, 0.0)
    expect(by["outbound"]["srd_failure_ms"], [32000])
    assert "by_kind" not in by["staff"]


def test_simultaneous_group(figures, estate):
    g = figures["groups"]["daihyo"]
    assert (g["name"], g["strategy"], g["members"]) == ("代表", "simultaneous", 2)
    counts = {k: g[k] for k in ("offered", "answered", "overflowed", "abandoned", "failed")}
    assert counts == {"offered": 3, "answered": 2, "overflowed": 0, "abandoned": 0, "failed": 0}  # A, K; J open
    assert g["answer_rate"] == pytest.approx(2 / 3) and g["overflow_rate"] == 0.0
    assert g["answer_rate_target"] == 0.9
    expect(g["pbx_processing_ms"], [3])
    expect(g["first_alert_ms"], [50])
    expect(g["fork_spread_ms"], [30])
    expect(g["time_to_answer_ms"], [2000])
    expect(g["srd_success_ms"], [120])


def test_erlang_c_beside_the_measured_figures(figures):
    e = figures["groups"]["daihyo"]["erlang_c"]
    # AHT = A's 30 s; 3 calls offered in 100 s -> 0.9 erlangs on 2 members
    assert (e["agents"], e["aht_s"], e["t_s"]) == (2, 30.0, 20.0)
    assert e["offered_erlangs"] == pytest.approx(0.9)
    assert e["predicted_service_level"] == pytest.approx(erlang.service_level(2, 0.9, 30.0, 20.0))
    assert e["predicted_asa_s"] == pytest.approx(erlang.asa_s(2, 0.9, 30.0))
    assert e["measured_service_level"] == pytest.approx(1 / 3)  # A in 2 s; K took 25 s; J never
    assert e["measured_asa_s"] == pytest.approx(2.0)


def test_sequential_group_with_abandoned_and_failed_calls(figures):
    g = figures["groups"]["soumu"]
    counts = {k: g[k] for k in ("offered", "answered", "overflowed", "abandoned", "failed")}
    assert counts == {"offered": 3, "answered": 1, "overflowed": 0, "abandoned": 1, "failed": 1}  # H; G; B
    assert g["abandoned_rate"] == pytest.approx(1 / 3)
    expect(g["pbx_processing_ms"], [2, 5, 4])
    expect(g["first_alert_ms"], [100, 40])
    expect(g["fork_spread_ms"], [])  # one member at a time: no spread
    assert g["erlang_c"]["aht_s"] == 10.0


def test_a_call_on_two_nodes_is_one_call(figures):
    g = figures["groups"]["shimin"]
    assert (g["offered"], g["failed"], g["overflowed"], g["overflow_rate"]) == (1, 1, 1, 1.0)
    expect(g["pbx_processing_ms"], [7])  # the routing node's row, not the transit node's 99
    expect(g["first_alert_ms"], [200])
    expect(g["fork_spread_ms"], [])  # rotation: the second member rang 10 s later, another step
    assert g["erlang_c"]["aht_s"] == 120.0  # nothing answered: the default
    assert g["erlang_c"]["offered_erlangs"] == pytest.approx(1.2)


def test_tiered_group_spreads_only_within_the_first_tier(figures):
    g = figures["groups"]["kikaku"]
    assert (g["offered"], g["answered"]) == (1, 1)
    expect(g["first_alert_ms"], [20])
    expect(g["fork_spread_ms"], [60])
    expect(g["time_to_answer_ms"], [4500])


def test_a_group_without_calls(figures):
    g = figures["groups"]["fukushi"]
    assert (g["offered"], g["answer_rate"], g["overflow_rate"], g["abandoned_rate"]) == (0, None, None, None)
    assert g["time_to_answer_ms"]["count"] == 0 and g["time_to_answer_ms"]["p95"] is None
    assert g["erlang_c"]["predicted_service_level"] is None and g["erlang_c"]["measured_service_level"] is None


def test_hunt_overall_adds_up_the_groups(figures):
    o = figures["hunt_overall"]
    counts = {k: o[k] for k in ("offered", "answered", "overflowed", "abandoned", "failed")}
    assert counts == {"offered": 8, "answered": 4, "overflowed": 1, "abandoned": 1, "failed": 2}
    assert (o["answer_rate"], o["overflow_rate"], o["abandoned_rate"]) == (0.5, 0.125, 0.125)
    expect(o["fork_spread_ms"], [30, 60])
    expect(o["first_alert_ms"], [50, 100, 40, 200, 20])
    expect(o["pbx_processing_ms"], [3, 2, 5, 4, 7, 1])
    expect(o["time_to_answer_ms"], [2000, 3000, 4500])
    expect(o["srd_success_ms"], [120, 150, 100, 300, 100])


def test_timeline(figures):
    rows = figures["timeline"]
    assert len(rows) == 101 and [r["second"] for r in rows] == list(range(101))
    assert rows[0] == {"second": 0, "attempts": 1, "connected": 0, "failed": 0, "registered": 1, "register_failed": 0}
    assert rows[1] == {"second": 1, "attempts": 1, "connected": 0, "failed": 1, "registered": 1, "register_failed": 0}
    assert rows[32]["register_failed"] == 1 and rows[38]["failed"] == 2  # D and F
    totals = {k: sum(r[k] for r in rows) for k in ("attempts", "connected", "failed", "registered", "register_failed")}
    assert totals == {"attempts": 11, "connected": 4, "failed": 6, "registered": 3, "register_failed": 1}


@pytest.mark.parametrize("order", [1, -1])
def test_dedupe_prefers_the_row_naming_the_group_then_the_earliest(order):
    rows = [cdr("X", None, started_at="2025-06-15 10:00:00+09", node="a"),
            cdr("X", "soumu", started_at="2025-06-15 10:00:02+09", node="b"),
            cdr("X", "soumu", started_at="2025-06-15 10:00:01.5+09", node="c"),
            cdr("X", "soumu", started_at="2025-06-15 01:00:03+00", node="utc"),  # 10:00:03 in Tokyo: later
            cdr("Y", None, started_at="2025-06-15 10:00:03+09", node="d"),
            cdr("Y", None, started_at="2025-06-15 10:00:01+09", node="e")]
    kept = metrics.dedupe_cdrs(rows[::order])
    assert {cid: row["node"] for cid, row in kept.items()} == {"X": "c", "Y": "e"}


def test_srd_leaves_out_redirects_and_the_callers_own_cancel(estate):
    s = Stream()
    s.placed("P", 0.0, CITIZEN, "0736772520").failed("P", 3.0, CITIZEN, 487)  # gave up before any response
    s.placed("Q", 1.0, CITIZEN, "0736772520").failed("Q", 1.1, CITIZEN, 301)
    s.placed("R", 2.0, CITIZEN, "0736772520").failed("R", 2.25, CITIZEN, 600)
    f = metrics.compute(s.events, [], estate)["sessions"]
    expect(f["srd_failure_ms"], [250])
    expect(f["srd_success_ms"], [])
    assert (f["attempts"], f["redirected"], f["effective"], f["ineffective"]) == (3, 1, 1, 0)
    assert f["seer_percent"] == 50.0 and f["ser_percent"] == 0.0


def test_no_traffic_at_all(estate):
    f = metrics.compute([], [], estate)
    assert f["window"] == {"start_wall": 0.0, "end_wall": 0.0, "seconds": 0.0}
    assert f["timeline"] == [] and f["registration"]["curve"] == []
    assert f["registration"]["ira_percent"] is None and f["registration"]["rrd_ms"]["p50"] is None
    s = f["sessions"]
    assert s["attempts"] == 0 and s["ser_percent"] is None and s["scr_percent"] is None
    assert s["by_kind"]["citizen"]["seer_percent"] is None
    assert all(g["offered"] == 0 for g in f["groups"].values())
    assert set(f["groups"]) == {"daihyo", "soumu", "shimin", "kikaku", "fukushi"}
    assert f["hunt_overall"]["answer_rate"] is None
    json.dumps(f, allow_nan=False)


def test_a_group_only_the_cdrs_know(estate):
    f = metrics.compute([], [cdr("Z", "gone", "failed")], estate)
    assert f["groups"]["gone"]["offered"] == 1 and f["groups"]["gone"]["members"] == 0
    assert f["groups"]["gone"]["answer_rate_target"] is None


def test_files_and_command_line(tmp_path, capsys):
    events, cdrs = storm()
    ev_path, cdr_path = tmp_path / "events.jsonl", tmp_path / "cdrs.csv"
    ev_path.write_text("".join(json.dumps(e) + "\n" for e in events) + "\n", encoding="utf-8")
    header = ",".join(metrics.CDR_FIELDS)
    lines = [",".join("" if r[k] is None else r[k] for k in metrics.CDR_FIELDS) for r in cdrs]
    cdr_path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    assert metrics.load_cdrs(cdr_path)[1]["hunt_group"] == "soumu"
    assert metrics.load_cdrs(cdr_path)[1]["overflow"] is None
    assert metrics.main([str(ev_path), str(cdr_path), str(TINY), "--service-level-s", "1.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sessions"]["attempts"] == 11
    assert out["groups"]["daihyo"]["erlang_c"]["t_s"] == 1.5
    assert out["groups"]["daihyo"]["erlang_c"]["measured_service_level"] == 0.0
    assert math.isclose(out["hunt_overall"]["answer_rate"], 0.5)
