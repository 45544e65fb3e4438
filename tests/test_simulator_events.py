"""The event stream's schema, and a round trip through a real (farm-owned) Redis."""

from __future__ import annotations

import shutil
import time

import pytest

from simulator import events


def test_every_event_carries_time_worker_and_its_fields():
    e = events.event("invite_received", "hall-000", handset="2001", call_id="abc@x", peer="2002")
    assert events.problems(e) == []
    assert abs(float(e["t"]) - time.monotonic()) < 1
    assert abs(float(e["wall"]) - time.time()) < 1
    assert all(isinstance(v, str) for v in e.values())


def test_missing_fields_and_unknown_types_are_problems():
    assert events.problems({"type": "answered", "t": "1", "wall": "1", "worker": "w", "handset": "2001"}) == [
        "answered: missing call_id"]
    assert events.problems({"type": "nonsense"}) == ["unknown type 'nonsense'"]
    with pytest.raises(ValueError):
        events.event("nonsense", "w")


def test_call_events_name_the_sip_call_id_and_failures_their_status():
    for kind in ("invite_received", "ringing_sent", "answered", "bye", "call_placed", "call_connected"):
        assert "call_id" in events.SCHEMA[kind]
    for kind in ("register_failed", "call_failed", "rejected", "refused_no_slot", "bye"):
        assert "status" in events.SCHEMA[kind]


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_sink_writes_the_stream_and_the_registration_hash(tmp_path):
    proc = events.start_redis(tmp_path / "farm", None)
    try:
        sink = events.Sink(events.url_for(tmp_path / "farm"), "hall-000")
        sink.emit("registered", handset="2001", target="dc-east", expires=600, elapsed="0.01")
        sink.set_handset("2001", "registered dc-east")
        sink.flush()
        entries = events.read(sink.client)
        assert [e["type"] for _, e in entries] == ["registered"]
        assert events.problems(entries[0][1]) == []
        assert sink.client.hget(events.HANDSETS, "2001") == "registered dc-east"
        assert not (tmp_path / "farm" / "dump.rdb").exists()
    finally:
        proc.terminate()
        proc.wait(5)
